//! `latchkey crd`: the OAuthClient CustomResourceDefinition on stdout.

use std::io::Write;

use crate::error::Error;

/// Write the CRD YAML to stdout. A closed pipe (`latchkey crd | head`) is not an error.
pub fn print() -> Result<(), Error> {
    let yaml = latchkey_api::crd::crd_yaml();
    let mut out = std::io::stdout().lock();
    match out.write_all(yaml.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Io {
            path: "<stdout>".into(),
            source: e,
        }),
        _ => Ok(()),
    }
}
