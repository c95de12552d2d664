//! Named crash points for the crash-safety tests: with `NATSUP_FAILPOINT=NAME`, the process
//! exits with code 99 when it reaches `hit("NAME")`, as if it had been killed right there.
//! Costs one env lookup per point; does nothing unless the variable is set.

pub const EXIT_CODE: i32 = 99;

pub fn hit(name: &str) {
    if std::env::var("NATSUP_FAILPOINT").is_ok_and(|v| v == name) {
        eprintln!("natsup: stopping at failpoint {name}");
        std::process::exit(EXIT_CODE);
    }
}
