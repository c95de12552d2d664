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
use crate::state::State;
use crate::{cluster, ui};

pub fn run(ctx: &Context, args: RotateCaArgs) -> Result<i32> {
    if let Some(config) = session::cluster_config(ctx, &args.target)? {
        return run_cluster(ctx, args, config);
    }
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

/// A cluster: the nodes verify each other's route certificates against the trust bundle, so
/// `--finish` rolls three times, each one node at a time ([`cluster::converge`]):
/// 1. the bundle of old + new CA to every node (nothing to do if `up` ran since `--begin`),
///    so every node accepts a route certificate from either CA;
/// 2. a certificate from the new CA on every node, each proven presented;
/// 3. once the old CA is retired locally, the bundle of the new CA alone.
fn run_cluster(ctx: &Context, args: RotateCaArgs, config: crate::config::Config) -> Result<i32> {
    let mut session = Session::open(ctx, config)?;
    let ca_cert = ctx.client_state_dir(&session.config).ca_cert();
    let now = session.now;
    if args.begin {
        let (view, state) = &mut session.nodes[0];
        if state.begin_ca_rotation(view, now)? {
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
    if session.nodes[0].1.next_ca.is_none() {
        return Err(Error::usage(
            "no CA rotation is under way",
            Some("start one with `natsup rotate-ca --begin`".to_string()),
        ));
    }
    let accept = args.target.accept_new_host_key;
    let roll = |nodes: &[(crate::config::Config, State)], proofs: &[Proof]| {
        let mut members = cluster::members(nodes, accept);
        crate::runtime()
            .block_on(cluster::converge(
                &mut members,
                proofs,
                false,
                operation::READY_TIMEOUT,
            ))
            .map(|rolled| ui::note(rolled.summary()))
    };
    let settled = vec![Proof::Settled; session.nodes.len()];
    ui::note("1 of 3: every node trusts the old and the new CA");
    roll(&session.nodes, &settled)?;
    for (view, state) in &mut session.nodes {
        state.issue_from_next_ca(view, now)?;
    }
    failpoint::hit("rotate-ca:issued");
    ui::note("2 of 3: every node presents a certificate from the new CA");
    let proofs = vec![
        Proof::ServesCertificate {
            retry: "rotate-ca --finish",
        };
        session.nodes.len()
    ];
    roll(&session.nodes, &proofs)?;
    session.nodes[0].1.retire_old_ca()?;
    let mut nodes = Vec::new();
    for view in session.config.node_views() {
        let state = State::load(&view, &ctx.state_dir(&view))?;
        nodes.push((view, state));
    }
    ui::note("3 of 3: every node trusts the new CA alone");
    roll(&nodes, &settled)?;
    println!("every node presents a certificate from the new CA; the old CA is retired.");
    println!("clients trust: {}", ca_cert.display());
    Ok(0)
}
