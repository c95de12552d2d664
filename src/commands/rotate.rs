//! `natsup rotate-passwords`: new passwords, applied by reload node by node, proven, then made
//! current.
//!
//! The new password is saved locally as *pending* before any server sees it, and becomes
//! current only once a server accepted it and refused the old one; on a cluster every node is
//! then asked the same ([`crate::operation`]). Until the last node has reloaded, a client of
//! a rotated user that reconnects with its new password is refused by the nodes not yet
//! reloaded and tries the next URL; every other user's clients are never disconnected.

use crate::cli::{EnvFormat, RotatePasswordsArgs};
use crate::client_env::{format_vars, vars};
use crate::error::{Error, Result};
use crate::failpoint;
use crate::operation::{self, Change};
use crate::route_rotation;
use crate::session::{self, Context, Session};
use crate::settle::Outcome;
use crate::state::SYSTEM_USER;
use crate::ui;

pub fn run(ctx: &Context, args: RotatePasswordsArgs) -> Result<i32> {
    if args.route {
        return run_route(ctx, args);
    }
    let (config, members) = session::deployment(ctx, &args.target.target())?;
    let mut session = Session::open(ctx, config)?;
    let users = if args.system {
        vec![SYSTEM_USER.to_string()]
    } else {
        session.config.select_users(&args.users)?
    };
    // Refused before a new password is even made: a node that must present the ACME CA's
    // certificate and has none would otherwise get natsup's CA's with the new passwords
    // (`operation::converge` refuses it too, as for every command).
    for i in 0..session.config.nodes().len() {
        session
            .state
            .refuse_private_ca_for_acme(&session.config, i, "rotate-passwords")?;
    }
    let Session {
        config, state, now, ..
    } = &mut session;
    // The system user has no grace period: nats-server's system account is rendered with
    // one user, and nobody stays connected as it (natsup and the nats CLI log in per command).
    let grace = if args.system {
        None
    } else {
        args.grace
            .map_or_else(|| config.auth.rotation_grace(), |g| g.0)
    };
    if grace.is_some() {
        refuse_overlapping_grace(config, state, &users, *now)?;
    }
    let pending = state
        .secrets
        .begin_rotation(&users, config.auth.bcrypt_cost, *now, grace);
    let change = Change {
        dry_run: args.dry_run,
        ..Change::settled("rotate-passwords", config)
    };
    if args.dry_run {
        ui::note(format!(
            "would rotate the passwords of: {}",
            pending.join(", ")
        ));
    } else {
        // Saved before any server sees them: from here on, no outcome can lose a password.
        state.save_secrets()?;
        failpoint::hit("rotate-passwords:pending-saved");
    }
    let rolled =
        crate::runtime().block_on(operation::converge(config, state, &members, None, &change))?;
    if args.dry_run {
        return Ok(0);
    }
    ui::note(rolled.summary(config));
    let rotated: Vec<&str> = pending
        .iter()
        .filter(|u| {
            rolled
                .settled
                .iter()
                .any(|s| &s.user == *u && s.outcome == Outcome::Promoted)
        })
        .map(String::as_str)
        .collect();
    if rotated.len() != pending.len() {
        // `natsup up` settles what is pending without rotating anyone else.
        return Err(Error::failed(
            "the server did not take every new password",
            Some("run `natsup up` to finish it".to_string()),
        ));
    }
    if config.is_cluster() {
        println!("rotated on every node: {}", rotated.join(", "));
    } else {
        println!("rotated: {}", rotated.join(", "));
    }
    // A rotation an interrupted run left pending is finished with this one, whichever kind
    // it is: the system user's and the users' are reported apart (a client is never handed
    // the system user's password).
    let (system, rotated): (Vec<&str>, Vec<&str>) =
        rotated.into_iter().partition(|u| *u == SYSTEM_USER);
    if !system.is_empty() {
        println!(
            "Every server refuses the system user's old password. nats CLI contexts saved for \
             it are out of date: save yours again with `natsup context --system`."
        );
    }
    if rotated.is_empty() {
        return Ok(0);
    }
    if grace.is_some() {
        return graced_report(config, state, &rotated, args.show);
    }
    // The passwords stay off the terminal unless asked for: a run's output ends up in
    // scrollback, CI logs and cron mail.
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
        let vars = vars(config, state, user)?;
        print!("{}", format_vars(&vars, EnvFormat::Dotenv));
    }
    Ok(0)
}

/// `rotate-passwords --route`: a new route credential for the cluster
/// ([`crate::route_rotation`]); resumes one an earlier run left under way.
fn run_route(ctx: &Context, args: RotatePasswordsArgs) -> Result<i32> {
    let (config, members) = session::deployment(ctx, &args.target.target())?;
    if !config.is_cluster() {
        return Err(Error::usage(
            "a deployment of one node has no route credential",
            Some("`--route` is for a deployment with several `nodes`".to_string()),
        ));
    }
    let mut session = Session::open(ctx, config)?;
    let Session { config, state, .. } = &mut session;
    if args.dry_run {
        let why = state
            .secrets
            .route_rotation
            .as_ref()
            .map_or("asked for".to_string(), |r| r.reason.clone());
        ui::note(format!(
            "would rotate the route credential ({why}): two rolling reloads, every node \
             dialing with both passwords, then accepting only the new one"
        ));
        return Ok(0);
    }
    state
        .secrets
        .schedule_route_rotation("asked for".to_string());
    state.save_secrets()?;
    let done = crate::runtime().block_on(route_rotation::finish(
        config,
        state,
        &members,
        operation::READY_TIMEOUT,
    ))?;
    let done = done.expect("a rotation was scheduled");
    println!(
        "route credential rotated on every node in {:.1}s ({} remote commands): every node refuses the old one",
        done.elapsed.as_secs_f64(),
        done.commands
    );
    Ok(0)
}

/// A rotation with a grace period while an earlier one of the same user is still in its grace
/// would need a third login; refused, with when the earlier one ends.
fn refuse_overlapping_grace(
    config: &crate::config::Config,
    state: &crate::state::State,
    users: &[String],
    now: time::OffsetDateTime,
) -> Result<()> {
    for user in users {
        let login = crate::state::grace_login(user, now);
        if config.user(&login).is_some() {
            return Err(Error::failed(
                format!("{user}'s new login would be {login}, the name of another user"),
                Some("run it again in a second".to_string()),
            ));
        }
        let Some(s) = state.secrets.users.get(user) else {
            continue;
        };
        if let Some(g) = s.graced.iter().find(|g| !g.retiring && g.until > now) {
            return Err(Error::failed(
                format!(
                    "{user}'s previous rotation is still in its grace period: its old \
                     credential (login {}) is valid until {}",
                    g.login,
                    crate::ui::utc(g.until)
                ),
                Some(
                    "rotate it again once that has passed (`natsup up` then retires it), or now \
                     without a grace period (`--grace 0s`), which also ends the earlier one"
                        .to_string(),
                ),
            ));
        }
    }
    Ok(())
}

/// What a rotation with a grace period tells: the new login, and until when the old one works.
fn graced_report(
    config: &crate::config::Config,
    state: &crate::state::State,
    rotated: &[&str],
    show: bool,
) -> Result<i32> {
    println!(
        "Clients connected with the old credentials stay connected, and those credentials \
         keep working until their grace period ends; new clients must use the new login and \
         password (NATS_USER changes too):"
    );
    for user in rotated {
        let s = &state.secrets.users[*user];
        let until = s
            .graced
            .iter()
            .filter(|g| !g.retiring)
            .map(|g| g.until)
            .max()
            .map(crate::ui::utc)
            .unwrap_or_default();
        println!(
            "  {user}: new login {}, old login {} valid until {until}",
            state.secrets.login(user),
            s.graced
                .last()
                .map(|g| g.login.as_str())
                .unwrap_or_default()
        );
    }
    for user in rotated {
        if show {
            println!();
            println!("# natsup env {user}");
            let vars = vars(config, state, user)?;
            print!("{}", format_vars(&vars, EnvFormat::Dotenv));
        } else {
            println!("  natsup env {user}");
        }
    }
    Ok(0)
}
