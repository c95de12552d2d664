use clap::Parser;

fn main() {
    // `natsup env USER | head -1` should end quietly, as cat would: Rust ignores SIGPIPE, which
    // turns a closed pipe into a panic in println!.
    #[cfg(unix)]
    // SAFETY: called first thing, before any thread exists; SIG_DFL is always a valid handler.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = natsup::cli::Cli::parse();
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
