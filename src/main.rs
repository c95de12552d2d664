use clap::Parser;

fn main() {
    let cli = natsup::cli::Cli::parse();
    // `natsup env USER | head -1` should end quietly, as cat would: Rust ignores SIGPIPE, which
    // turns a closed pipe into a panic in println!. Only for the commands that print and touch
    // no server: one that does keeps ignoring it, so a pipe to an ssh child or a socket that
    // closes under it is an error it reports, never a silent kill half-way through a change.
    #[cfg(unix)]
    if cli.command.prints_only() {
        // SAFETY: no other thread exists yet; SIG_DFL is always a valid handler.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let code = match natsup::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            if let Some(hint) = e.hint() {
                eprintln!("hint: {hint}");
            }
            e.exit_code()
        }
    };
    std::process::exit(code);
}
