//! `natsup rotate-ca --begin | --finish`: replaces the CA without an outage.
//!
//! `--begin` makes the next CA and hands clients a bundle of old + new (`ca/rootCA.pem`, the
//! file `natsup env` and `ca path` point at), while the server keeps its certificate from the
//! old CA. Once every client has the bundle, `--finish` issues the server certificate from
//! the new CA, reloads, proves the server presents it, and drops the old CA.

use crate::cli::RotateCaArgs;
use crate::error::{Error, Result};
use crate::failpoint;
use crate::operation::{self, Proof};
use crate::session::{self, Context, Session};

pub fn run(ctx: &Context, args: RotateCaArgs) -> Result<i32> {
    // --begin only touches local state: it needs no server access.
    let (config, via) = match session::server(ctx, &args.target) {
        Ok((c, v)) => (c, Some(v)),
        Err(e) if args.begin => (ctx.load_config().map_err(|_| e)?, None),
        Err(e) => return Err(e),
    };
    // With a publicly trusted certificate natsup's CA signs nothing the server presents, and
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
    session
        .state
        .issue_from_next_ca(&session.config, session.now)?;
    failpoint::hit("rotate-ca:issued");
    let via = via.expect("--finish resolved the server");
    crate::runtime().block_on(operation::apply(
        "rotate-ca",
        &via,
        &mut session,
        Proof::ServesCertificate {
            retry: "rotate-ca --finish",
        },
    ))?;
    // Only now that the server presents the new CA's certificate may the old CA go.
    session.state.retire_old_ca()?;
    println!("the server presents a certificate from the new CA; the old CA is retired.");
    println!("clients trust: {}", ca_cert.display());
    Ok(0)
}
