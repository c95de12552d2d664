//! `natsup ca path|show`: the CA clients must trust.

use time::OffsetDateTime;

use crate::cli::CaCommand;
use crate::error::{Error, Result};
use crate::fsutil::read_to_string;
use crate::pki;

use super::Context;

pub fn run(ctx: &Context, command: CaCommand) -> Result<i32> {
    let config = ctx.load_config()?;
    let dir = ctx.state_dir(&config);
    let path = dir.ca_cert();
    if !path.exists() {
        return Err(Error::MissingState {
            name: config.name.clone(),
            what: "CA".into(),
            dir: dir.root.clone(),
        });
    }
    match command {
        CaCommand::Path => println!("{}", path.display()),
        CaCommand::Show => {
            let pem = read_to_string(&path)?;
            let now = OffsetDateTime::now_utc();
            for der in pki::pem_certs(&pem).map_err(|e| Error::corrupt(&path, e.0))? {
                let info = pki::inspect_der(&der).map_err(|e| Error::corrupt(&path, e.0))?;
                println!("subject:     {}", info.subject);
                println!("fingerprint: SHA256 {}", info.fingerprint);
                println!("serial:      {}", info.serial);
                println!(
                    "expires:     {} ({} days left)",
                    info.not_after.date(),
                    info.days_left(now)
                );
                println!("file:        {}", path.display());
            }
        }
    }
    Ok(0)
}
