//! `natsup rotate-ca --begin | --finish`: replaces the CA without an outage.
//!
//! `--begin` makes the next CA and hands clients a bundle of old + new (`ca/rootCA.pem`, the
//! file `natsup env` and `ca path` point at), while the nodes keep their certificates from
//! the old CA. Once every client has the bundle, `--finish` rolls three times, each one node
//! at a time ([`operation::converge`]); the nodes of a cluster verify each other's route
//! certificates against the trust bundle, so:
//! 1. the bundle of old + new CA to every node (nothing to do if `up` ran since `--begin`,
//!    and nothing for one server, which trusts no CA itself), so every node accepts a route
//!    certificate from either CA;
//! 2. a certificate from the new CA on every node, each proven presented;
//! 3. once the old CA is retired locally, the bundle of the new CA alone.

use crate::cli::RotateCaArgs;
use crate::error::{Error, Result};
use crate::failpoint;
use crate::operation::{self, Change, Member, Proof};
use crate::session::{self, Context, Session};
use crate::ui;

pub fn run(ctx: &Context, args: RotateCaArgs) -> Result<i32> {
    let target = args.target.target();
    // --begin only touches local state: it needs no way to the servers.
    let (config, members) = match session::deployment(ctx, &target) {
        Ok(found) => found,
        Err(e) if args.begin => (ctx.load_config().map_err(|_| e)?, Vec::new()),
        Err(e) => return Err(e),
    };
    // With a publicly trusted certificate natsup's CA signs nothing a server presents, and
    // `--finish` would deploy a certificate from it: refused, before anything is made.
    if config.acme().is_some() {
        return Err(Error::usage(
            "the server presents the ACME CA's certificate (tls.issuer: acme): natsup's own CA is not in use, so there is nothing to rotate",
            Some("switch to `tls.issuer: ca` first if you mean to rotate natsup's CA".to_string()),
        ));
    }
    let ca_cert = ctx.state_dir(&config).ca_cert();
    let mut session = Session::open(ctx, config)?;

    if args.begin {
        if session
            .state
            .begin_ca_rotation(&session.config, session.now)?
        {
            println!("made a new CA; clients now get a bundle of the old and the new one:");
        } else {
            println!("a CA rotation is already under way; clients get the bundle:");
        }
        println!("  {}", ca_cert.display());
        println!(
            "Give it to every client (`natsup env USER`, `natsup context`), then run `natsup rotate-ca --finish`."
        );
        return Ok(0);
    }

    if session.state.next_ca.is_none() {
        return Err(Error::usage(
            "no CA rotation is under way",
            Some("start one with `natsup rotate-ca --begin`".to_string()),
        ));
    }
    let Session {
        config, state, now, ..
    } = &mut session;
    let cluster = config.is_cluster();
    let roll = |config, state: &mut _, members: &[Member], change: &Change| {
        crate::runtime()
            .block_on(operation::converge(config, state, members, None, change))
            .map(|rolled| ui::note(rolled.summary(config)))
    };
    let settled = Change::settled("rotate-ca", config);
    if cluster {
        ui::note("1 of 3: every node trusts the old and the new CA");
        roll(config, state, &members, &settled)?;
    }
    state.issue_from_next_ca(config, *now)?;
    failpoint::hit("rotate-ca:issued");
    if cluster {
        ui::note("2 of 3: every node presents a certificate from the new CA");
    }
    let proven = Change {
        proofs: vec![
            Proof::ServesCertificate {
                retry: "rotate-ca --finish",
            };
            config.nodes().len()
        ],
        ..settled.clone()
    };
    roll(config, state, &members, &proven)?;
    // Only now that every node presents the new CA's certificate may the old CA go.
    state.retire_old_ca()?;
    if cluster {
        ui::note("3 of 3: every node trusts the new CA alone");
        roll(config, state, &members, &settled)?;
        println!("every node presents a certificate from the new CA; the old CA is retired.");
    } else {
        println!("the server presents a certificate from the new CA; the old CA is retired.");
    }
    println!("clients trust: {}", ca_cert.display());
    Ok(0)
}
