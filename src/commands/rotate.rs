//! `natsup rotate-passwords`: new passwords, applied by reload, proven, then made current.
//!
//! The new password is saved locally as *pending* before the server sees it, and becomes
//! current only once the server accepted it and refused the old one ([`crate::operation`]).

use crate::cli::{EnvFormat, RotatePasswordsArgs};
use crate::client_env::{format_vars, vars};
use crate::deploy::{Node, deploy};
use crate::error::{Error, Result};
use crate::failpoint;
use crate::operation::{self, Outcome, Proof, READY_TIMEOUT};
use crate::session::{self, Context, Session};
use crate::{cluster, ui};

pub fn run(ctx: &Context, args: RotatePasswordsArgs) -> Result<i32> {
    if let Some(config) = session::cluster_config(ctx, &args.target)? {
        return run_cluster(ctx, args, config);
    }
    let (mut session, via) = Session::open_server(ctx, &args.target)?;
    let users = session.config.select_users(&args.users)?;

    let pending =
        session
            .state
            .secrets
            .begin_rotation(&users, session.config.auth.bcrypt_cost, session.now);
    if args.dry_run {
        crate::ui::note(format!(
            "would rotate the passwords of: {}",
            pending.join(", ")
        ));
        return crate::runtime().block_on(async {
            deploy(
                &via,
                &Node::of(&session.config, &session.state),
                true,
                READY_TIMEOUT,
            )
            .await
            .map(|_| 0)
        });
    }
    // Saved before the server sees them: from here on, no outcome can lose a password.
    session.state.save_secrets()?;
    failpoint::hit("rotate-passwords:pending-saved");

    let applied = crate::runtime().block_on(operation::apply(
        "rotate-passwords",
        &via,
        &mut session,
        Proof::Settled,
    ))?;
    let rotated: Vec<&str> = applied
        .settled
        .iter()
        .filter(|s| s.outcome == Outcome::Promoted)
        .map(|s| s.user.as_str())
        .collect();
    if rotated.len() != pending.len() {
        return Err(Error::failed(
            "the server did not take every new password",
            Some("run `natsup rotate-passwords` again".to_string()),
        ));
    }
    println!("rotated: {}", rotated.join(", "));
    // The passwords stay off the terminal unless asked for: a run's output ends up in
    // scrollback, CI logs and cron mail (issue 11, 4.6 c).
    if !args.show {
        println!(
            "These clients must now use their new password (their old connections were closed by the server); get each one's settings with:"
        );
        for user in rotated {
            println!("  natsup env {user}");
        }
        return Ok(0);
    }
    println!(
        "These clients must now use their new password (their old connections were closed by the server):"
    );
    for user in rotated {
        println!();
        println!("# natsup env {user}");
        let vars = vars(&session.config, &session.state, user)?;
        print!("{}", format_vars(&vars, EnvFormat::Dotenv));
    }
    Ok(0)
}

/// A cluster: the pending passwords are saved once, then the nodes reload one at a time, each
/// proven (new accepted, old refused on that node) and back in the cluster before the next
/// ([`cluster::converge`]). Until the last node has reloaded, a client of a rotated user
/// that reconnects with its new password is refused by the nodes not yet reloaded and
/// tries the next URL; every other user's clients are never disconnected.
fn run_cluster(
    ctx: &Context,
    args: RotatePasswordsArgs,
    config: crate::config::Config,
) -> Result<i32> {
    let mut session = Session::open(ctx, config)?;
    let users = session.config.select_users(&args.users)?;
    let (cost, now) = (session.config.auth.bcrypt_cost, session.now);
    let pending = session.nodes[0].1.secrets.begin_rotation(&users, cost, now);
    let secrets = session.nodes[0].1.secrets.clone();
    for (_, state) in &mut session.nodes {
        state.secrets = secrets.clone();
    }
    if args.dry_run {
        ui::note(format!(
            "would rotate the passwords of: {}",
            pending.join(", ")
        ));
    } else {
        session.nodes[0].1.save_secrets()?;
        failpoint::hit("rotate-passwords:pending-saved");
    }
    let mut members = cluster::members(&session.nodes, args.target.accept_new_host_key);
    let proofs = vec![Proof::Settled; members.len()];
    let rolled = crate::runtime().block_on(cluster::converge(
        &mut members,
        &proofs,
        args.dry_run,
        READY_TIMEOUT,
    ))?;
    if args.dry_run {
        return Ok(0);
    }
    ui::note(rolled.summary());
    let last = &members.last().expect("a cluster has nodes").state.secrets;
    let unsettled = last.pending_users();
    if !unsettled.is_empty() {
        return Err(Error::failed(
            format!(
                "not every node took the new passwords of {}",
                unsettled.join(", ")
            ),
            Some("run `natsup rotate-passwords` again, or `natsup up`".to_string()),
        ));
    }
    println!("rotated on every node: {}", pending.join(", "));
    println!("These clients must now use their new password; get each one's settings with:");
    for user in &pending {
        println!("  natsup env {user}");
    }
    Ok(0)
}
