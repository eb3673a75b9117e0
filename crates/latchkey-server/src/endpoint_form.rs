//! Issue 13: the parameters of the introspection and revocation endpoints, read from a form
//! body with the token endpoint's strictness (malformed encoding and repeats refused, an empty
//! value counts as omitted). Client credentials in the same body are read by
//! [`crate::form::parse_token_form`], as everywhere.

use latchkey_core::OAuthError;

use crate::form::decode_component;

/// The values of `names` in `body`.
pub fn params<const N: usize>(
    body: &[u8],
    names: [&str; N],
) -> Result<[Option<String>; N], OAuthError> {
    let malformed = || OAuthError::invalid_request("the request body is not valid form data");
    let text = std::str::from_utf8(body).map_err(|_| malformed())?;
    let mut out: [Option<String>; N] = std::array::from_fn(|_| None);
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode_component(raw_name).ok_or_else(malformed)?;
        let Some(i) = names.iter().position(|n| *n == name) else {
            continue;
        };
        if out[i].is_some() {
            return Err(OAuthError::invalid_request(format!(
                "parameter {name} is repeated"
            )));
        }
        out[i] = Some(decode_component(raw_value).ok_or_else(malformed)?);
    }
    Ok(out.map(|v| v.filter(|v| !v.is_empty())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_named_parameters_strictly() {
        let [t, h] = params(
            b"token=a%2Eb+c&x=1&token_type_hint=",
            ["token", "token_type_hint"],
        )
        .unwrap();
        assert_eq!(t.as_deref(), Some("a.b c"));
        assert_eq!(h, None, "an empty value counts as omitted");
        assert!(params(b"token=a&token=b", ["token"]).is_err());
        assert!(params(b"token=%zz", ["token"]).is_err());
    }
}
