//! `latchkey hash-password`: one password from stdin, its Argon2id PHC hash (OWASP
//! parameters) on stdout, for the Secret a `User`'s `passwordRef` names.

use std::io::{BufRead, IsTerminal, Write};

use latchkey_core::password::{MAX_PASSWORD_LEN, PasswordHash};

use crate::error::Error;

/// The password on one line of `input`: the first line without its line ending. Refuses an
/// empty password and one over the length bound.
pub fn read_password(input: impl BufRead) -> Result<Vec<u8>, Error> {
    let mut line = Vec::new();
    // One byte over the bound (plus a CRLF) tells an overlong password from a full one.
    input
        .take(MAX_PASSWORD_LEN as u64 + 3)
        .read_until(b'\n', &mut line)
        .map_err(Error::io("<stdin>"))?;
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    if line.is_empty() {
        return Err(Error::Usage(
            "hash-password: no password on stdin (e.g. `printf %s \"$PASSWORD\" | latchkey hash-password`)".into(),
        ));
    }
    if line.len() > MAX_PASSWORD_LEN {
        return Err(Error::Usage(format!(
            "hash-password: a password may have at most {MAX_PASSWORD_LEN} bytes"
        )));
    }
    Ok(line)
}

pub fn run() -> Result<(), Error> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprintln!("Password (shown as typed; pipe it in to keep it off the screen):");
    }
    let password = read_password(stdin.lock())?;
    let hash = PasswordHash::new(&password)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", hash.as_phc())
        .and_then(|()| out.flush())
        .map_err(Error::io("<stdout>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_one_line_without_its_ending() {
        assert_eq!(read_password(&b"s3cret\n"[..]).unwrap(), b"s3cret");
        assert_eq!(read_password(&b"s3cret\r\nnext\n"[..]).unwrap(), b"s3cret");
        assert_eq!(read_password(&b"with space "[..]).unwrap(), b"with space ");
        assert!(read_password(&b""[..]).is_err());
        assert!(read_password(&b"\n"[..]).is_err());
        let max = vec![b'a'; MAX_PASSWORD_LEN];
        assert_eq!(read_password(&max[..]).unwrap(), max);
        let over = vec![b'a'; MAX_PASSWORD_LEN + 1];
        assert!(read_password(&over[..]).is_err());
    }
}
