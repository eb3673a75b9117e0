//! `latchkey crd [oauthclients|users]`: a CustomResourceDefinition on stdout.

use std::io::Write;

use crate::{cli::CrdKind, error::Error};

/// Write the CRD YAML to stdout. A closed pipe (`latchkey crd | head`) is not an error.
pub fn print(kind: CrdKind) -> Result<(), Error> {
    let yaml = match kind {
        CrdKind::OAuthClients => latchkey_api::crd::crd_yaml(),
        CrdKind::Users => latchkey_api::user_crd::crd_yaml(),
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(yaml.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Io {
            path: "<stdout>".into(),
            source: e,
        }),
        _ => Ok(()),
    }
}
