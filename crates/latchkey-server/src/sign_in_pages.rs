//! Issue 12: the pages a person sees while signing in, server-rendered HTML that works without
//! JavaScript: labelled fields a password manager recognises, and headers that keep the pages
//! out of frames (clickjacking), caches and referrers.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::response::Body;

/// No script, no frames around the page, styles only inline, forms posting to this origin.
pub const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'";

/// The one message for an unknown user and a wrong password alike.
pub const WRONG_CREDENTIALS: &str = "Wrong username or password.";

/// Escape text for HTML content and double-quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:24rem;margin:4rem auto;\
padding:0 1rem;color:#1b1b1b}h1{font-size:1.4rem}label{display:block;margin-top:1rem}\
input[type=text],input[type=password]{width:100%;padding:.5rem;font-size:1rem;box-sizing:\
border-box}button{margin-top:1.2rem;padding:.5rem 1.2rem;font-size:1rem}\
.error{color:#a40000;border:1px solid #a40000;padding:.5rem}ul{padding-left:1.2rem}";

fn document(title: &str, main: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head>\
         <body><main>{main}</main></body></html>\n",
        title = escape(title),
    )
}

/// The login form. `message` is shown above it (an error, announced to screen readers).
pub fn login(action: &str, client_id: &str, csrf: &str, message: Option<&str>) -> String {
    let alert = message
        .map(|m| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(m)))
        .unwrap_or_default();
    document(
        "Sign in",
        &format!(
            "<h1>Sign in</h1><p>to continue to <strong>{client}</strong></p>{alert}\
             <form method=\"post\" action=\"{action}\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <label for=\"username\">Username</label>\
             <input type=\"text\" id=\"username\" name=\"username\" autocomplete=\"username\" \
             autocapitalize=\"none\" spellcheck=\"false\" required autofocus>\
             <label for=\"password\">Password</label>\
             <input type=\"password\" id=\"password\" name=\"password\" \
             autocomplete=\"current-password\" required>\
             <button type=\"submit\">Sign in</button></form>",
            client = escape(client_id),
            action = escape(action),
            csrf = escape(csrf),
        ),
    )
}

/// The consent form: what the client asks for, allow or deny.
pub fn consent(action: &str, client_id: &str, username: &str, scope: &str, csrf: &str) -> String {
    let items: String = scope
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(|s| format!("<li><code>{}</code></li>", escape(s)))
        .collect();
    document(
        "Allow access",
        &format!(
            "<h1>Allow access?</h1><p><strong>{client}</strong> asks to act as \
             <strong>{user}</strong> with:</p><ul>{items}</ul>\
             <form method=\"post\" action=\"{action}\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button> \
             <button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button></form>",
            client = escape(client_id),
            user = escape(username),
            action = escape(action),
            csrf = escape(csrf),
        ),
    )
}

/// A page that ends the flow here: nothing is sent to the client.
pub fn error(message: &str) -> String {
    document(
        "Sign-in error",
        &format!(
            "<h1>Sign-in error</h1><p class=\"error\" role=\"alert\">{}</p>\
             <p>Go back to the application and start again.</p>",
            escape(message)
        ),
    )
}

/// After logout without a registered address to return to.
pub fn signed_out() -> String {
    document(
        "Signed out",
        "<h1>Signed out</h1><p>You are signed out of Latchkey in this browser.</p>",
    )
}

/// An HTML response with the pages' headers.
pub fn html(status: StatusCode, page: String) -> Response<Body> {
    let mut res = Response::new(Body::new(Bytes::from(page)));
    *res.status_mut() = status;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    res
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn login_form_is_labelled_password_manager_friendly_and_escaped() {
        let page = login("/oauth2/login", "<web&\"app\">", "t0k\"", Some("Wrong <b>"));
        for part in [
            "<label for=\"username\">",
            "id=\"username\" name=\"username\" autocomplete=\"username\"",
            "<label for=\"password\">",
            "type=\"password\" id=\"password\" name=\"password\" autocomplete=\"current-password\"",
            "method=\"post\" action=\"/oauth2/login\"",
            "name=\"csrf\" value=\"t0k&quot;\"",
            "&lt;web&amp;&quot;app&quot;&gt;",
            "role=\"alert\">Wrong &lt;b&gt;",
        ] {
            assert!(page.contains(part), "{part}\n{page}");
        }
        assert!(!page.contains("<script"), "no JavaScript");
        assert!(!login("/l", "c", "t", None).contains("role=\"alert\""));
    }

    #[test]
    fn consent_lists_scopes_and_offers_both_answers() {
        let page = consent("/oauth2/consent", "web", "alice", "openid orders:read", "t");
        for part in [
            "<code>openid</code>",
            "<code>orders:read</code>",
            "value=\"allow\"",
            "value=\"deny\"",
            "<strong>alice</strong>",
        ] {
            assert!(page.contains(part), "{part}");
        }
    }

    #[test]
    fn pages_refuse_frames_caches_and_sniffing() {
        let res = html(StatusCode::OK, error("x"));
        let h = res.headers();
        assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
        assert!(
            h[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("frame-ancestors 'none'")
        );
        assert_eq!(h[header::CACHE_CONTROL], "no-store");
        assert_eq!(h[header::CONTENT_TYPE], "text/html; charset=utf-8");
    }
}
