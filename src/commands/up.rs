//! `natsup up`, `natsup plan`: converge the server onto config + state.

use std::time::{Duration, Instant};

use time::OffsetDateTime;

use crate::cli::{PlanArgs, UpArgs};
use crate::config::Config;
use crate::deploy;
use crate::error::{Error, Result};
use crate::plan::{self, Action, Plan};
use crate::remote::{LocalRemote, Remote, SshRemote, SshTarget};
use crate::render::{self, TlsNames};
use crate::state::State;
use crate::verify::{self, Login, Target, Thresholds};

use super::Context;
use super::render::report_created;

/// How to reach the server for this run.
#[derive(Debug, Clone)]
pub enum Via {
    Local,
    Ssh(SshTarget),
}

/// Loads the config; `up --local` without one uses the built-in local deployment.
pub fn load_config(ctx: &Context, local: bool, image: Option<&str>) -> Result<Config> {
    let mut config = if local && !ctx.config_path.exists() {
        Config::local_default()
    } else {
        ctx.load_config()?
    };
    if let Some(image) = image {
        config.image = image.to_string();
    }
    Ok(config)
}

pub fn via(config: &Config, local: bool, accept_new_host_key: bool) -> Result<Via> {
    if local {
        return Ok(Via::Local);
    }
    match &config.ssh {
        Some(ssh) => Ok(Via::Ssh(SshTarget::from_config(ssh, accept_new_host_key))),
        None => Err(Error::usage(
            format!("deployment `{}` has no ssh section, so natsup does not know which server to use", config.name),
            Some("add `ssh: {destination: user@host}` to natsup.yaml, or run with --local for this machine's Docker".to_string()),
        )),
    }
}

pub fn run_up(ctx: &Context, args: UpArgs) -> Result<i32> {
    let config = load_config(ctx, args.target.local, args.target.image.as_deref())?;
    let via = via(&config, args.target.local, args.target.accept_new_host_key)?;
    let dir = ctx.state_dir(&config);
    let _lock = dir.lock()?;
    let now = OffsetDateTime::now_utc();
    // Local state first: whatever the server is about to get already exists on this disk.
    let (mut state, created) = State::ensure(&config, &dir, now)?;
    report_created(&created);
    // A routine `up` keeps the certificate fresh.
    if let Some(reason) = state.server_info.renewal_reason(now) {
        if args.dry_run {
            crate::ui::note(format!("the server certificate would be renewed: {reason}"));
        } else {
            crate::ui::note(format!("renewing the server certificate: {reason}"));
            state.reissue_server_cert(&config, now)?;
        }
    }
    let timeout = Duration::from_secs(args.timeout);
    crate::runtime().block_on(async {
        let deployed = deploy(&via, &config, &state, args.dry_run, timeout).await;
        if args.dry_run {
            return deployed.map(|_| 0);
        }
        // Finishes (or undoes) a password rotation an earlier run left pending.
        super::rotate::settle_pending(&config, &mut state).await?;
        let deployed = deployed?;
        crate::ui::note(format!("{}", deployed.summary()));
        let step = crate::ui::Step::start("verifying every user over TLS");
        let report = verify_deployment(&config, &state).await;
        step.done(report.status.label());
        super::verify::print_report(&report, false);
        Ok(if report.status >= verify::Status::Critical {
            1
        } else {
            0
        })
    })
}

/// What one converge run did.
#[derive(Debug, Clone)]
pub struct Deployed {
    pub plan: Plan,
    pub commands: usize,
    pub elapsed: Duration,
}

impl Deployed {
    pub fn summary(&self) -> String {
        format!(
            "{} in {:.1}s ({} remote command{})",
            match self.plan.action {
                Action::Nothing => "nothing to do",
                Action::Files => "restored files",
                Action::Reload => "reloaded",
                Action::Start => "started",
                Action::Recreate => "recreated",
            },
            self.elapsed.as_secs_f64(),
            self.commands,
            if self.commands == 1 { "" } else { "s" }
        )
    }
}

/// Brings the server onto (config, state) over one connection: observe, plan, apply.
pub async fn deploy(
    via: &Via,
    config: &Config,
    state: &State,
    dry_run: bool,
    timeout: Duration,
) -> Result<Deployed> {
    match via {
        Via::Local => deploy_with(LocalRemote::default(), config, state, dry_run, timeout).await,
        Via::Ssh(target) => {
            let step = crate::ui::Step::start(format!("connecting to {}", target.destination));
            let remote = SshRemote::connect(target).await?;
            step.done("connected");
            deploy_with(remote, config, state, dry_run, timeout).await
        }
    }
}

/// Anything with a `close` step; the SSH master must be closed explicitly.
pub trait Closable: Remote {
    fn finish(self) -> impl std::future::Future<Output = ()>;
}
impl Closable for SshRemote {
    async fn finish(self) {
        self.close().await
    }
}
impl Closable for LocalRemote {
    async fn finish(self) {}
}

async fn deploy_with<R: Closable>(
    mut remote: R,
    config: &Config,
    state: &State,
    dry_run: bool,
    timeout: Duration,
) -> Result<Deployed> {
    let started = Instant::now();
    let result = converge(&mut remote, config, state, dry_run, timeout).await;
    let commands = remote.commands();
    remote.finish().await;
    Ok(Deployed {
        plan: result?,
        commands,
        elapsed: started.elapsed(),
    })
}

async fn converge<R: Remote>(
    remote: &mut R,
    config: &Config,
    state: &State,
    dry_run: bool,
    timeout: Duration,
) -> Result<Plan> {
    let bundle = render::bundle(
        config,
        state,
        &TlsNames::versioned(&state.server_info.serial),
    );
    let step = crate::ui::Step::start("inspecting the server");
    let observed = deploy::observe(remote, config).await?;
    deploy::check_preflight(&observed, &remote.describe())?;
    let plan = plan::plan(&bundle, &observed);
    step.done(format!("plan: {}", action_name(plan.action)));
    print_plan(&plan, dry_run);
    if !dry_run && plan.uploads() {
        let step = crate::ui::Step::start(match plan.action {
            Action::Start => {
                "uploading, validating and starting the server (pulls the image if needed)"
            }
            Action::Recreate => "uploading, validating and recreating the container",
            Action::Reload => "uploading, validating and reloading the server",
            _ => "uploading and validating the files",
        });
        deploy::apply(remote, config, &bundle, &plan, timeout).await?;
        step.done("done");
    }
    Ok(plan)
}

pub fn print_plan(plan: &Plan, with_diffs: bool) {
    for reason in &plan.reasons {
        crate::ui::note(format!("  - {reason}"));
    }
    for f in &plan.files {
        crate::ui::note(format!("  {:?} {}", f.change, f.path));
        if with_diffs {
            if let Some(diff) = &f.diff {
                for line in diff.lines() {
                    crate::ui::note(format!("    {line}"));
                }
            }
        }
    }
}

pub fn action_name(action: Action) -> &'static str {
    match action {
        Action::Nothing => "nothing",
        Action::Files => "files",
        Action::Reload => "reload",
        Action::Start => "start",
        Action::Recreate => "recreate",
    }
}

/// Every user of the deployment, as `natsup verify` checks them.
pub async fn verify_deployment(config: &Config, state: &State) -> verify::Report {
    let target = Target::from_url(&config.url(), state.trust_pem.clone())
        .expect("a validated config always gives a valid URL");
    let logins: Vec<Login> = config
        .users
        .iter()
        .map(|u| Login {
            user: u.name.clone(),
            password: state.secrets.served_password(&u.name).clone(),
            permissions: u.permissions.clone(),
        })
        .collect();
    verify::verify(&target, &logins, &Thresholds::default()).await
}

pub fn run_plan(ctx: &Context, args: PlanArgs) -> Result<i32> {
    let config = load_config(ctx, args.target.local, args.target.image.as_deref())?;
    let via = via(&config, args.target.local, args.target.accept_new_host_key)?;
    let dir = ctx.state_dir(&config);
    let _lock = dir.lock()?;
    let state = State::load(&config, &dir)?;
    crate::runtime().block_on(async {
        let plan = match via {
            Via::Local => plan_with(LocalRemote::default(), &config, &state).await?,
            Via::Ssh(target) => {
                plan_with(SshRemote::connect(&target).await?, &config, &state).await?
            }
        };
        if args.json {
            println!(
                "{}",
                serde_json::to_string_pretty(&plan).expect("plans serialize")
            );
        } else {
            println!("action: {}", action_name(plan.action));
            for reason in &plan.reasons {
                println!("  - {reason}");
            }
            for f in &plan.files {
                println!("{:?} {}", f.change, f.path);
                if let Some(diff) = &f.diff {
                    print!("{diff}");
                }
            }
        }
        Ok(0)
    })
}

async fn plan_with<R: Closable>(mut remote: R, config: &Config, state: &State) -> Result<Plan> {
    let bundle = render::bundle(
        config,
        state,
        &TlsNames::versioned(&state.server_info.serial),
    );
    let observed = deploy::observe(&mut remote, config).await;
    remote.finish().await;
    let observed = observed?;
    deploy::check_preflight(&observed, "server")?;
    Ok(plan::plan(&bundle, &observed))
}
