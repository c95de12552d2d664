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
use crate::session::{Context, Session};

pub fn run(ctx: &Context, args: RotatePasswordsArgs) -> Result<i32> {
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
