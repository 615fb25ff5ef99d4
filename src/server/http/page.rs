//! The pages' frame, the login page and the embedded assets (one style
//! sheet, one script), all compiled into the binary: no framework, no CDN,
//! nothing fetched from anywhere else. Every page works with JavaScript
//! off except the upload, which needs it to resume.

use super::text::html;

/// The style sheet, `/assets/ferry.css`.
pub const STYLE: &str = include_str!("assets/ferry.css");
/// BLAKE3 in JavaScript, `/assets/blake3.js`, for the upload script.
pub const BLAKE3_JS: &str = include_str!("assets/blake3.js");
/// The upload script, `/assets/upload.js`.
pub const UPLOAD_JS: &str = include_str!("assets/upload.js");

/// A page with `title` and `body` (already HTML). With a session's
/// `csrf` token the page carries it for the script, and a logout button.
pub fn layout(title: &str, body: &str, csrf: Option<&str>) -> String {
    let (meta, logout) = match csrf {
        Some(csrf) => (
            format!("<meta name=\"ferry-csrf\" content=\"{}\">\n", html(csrf)),
            format!(
                "<form method=\"post\" action=\"/logout\" class=\"logout\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
                 <button>log out</button></form>",
                html(csrf)
            ),
        ),
        None => (String::new(), String::new()),
    };
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n{meta}\
         <title>{title} · ferry</title>\n<link rel=\"stylesheet\" href=\"/assets/ferry.css\">\n\
         </head>\n<body>\n<header><strong>ferry</strong>{logout}</header>\n<main>\n{body}</main>\n\
         </body>\n</html>\n"
    )
}

/// The login form; `failed` says the last try was wrong.
pub fn login(next: &str, failed: bool) -> String {
    let note = if failed {
        "<p class=\"error\">That token is not right.</p>\n"
    } else {
        ""
    };
    let body = format!(
        "<h1>Log in</h1>\n{note}<form method=\"post\" action=\"/login\">\n\
         <label>Access token <input type=\"password\" name=\"token\" autocomplete=\"current-password\" \
         required autofocus></label>\n<input type=\"hidden\" name=\"next\" value=\"{}\">\n\
         <button>log in</button>\n</form>\n<p>The token is in the server's state directory \
         (<code>token</code>), or ask for a client token with <code>ferry tokens add</code>.</p>\n",
        html(next)
    );
    layout("log in", &body, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_login_page_escapes_where_it_goes_next() {
        let page = login("/files/\"><script>x</script>", true);
        assert!(!page.contains("<script>x"), "{page}");
        assert!(page.contains("That token is not right"));
    }

    #[test]
    fn assets_load_nothing_from_elsewhere() {
        for asset in [STYLE, UPLOAD_JS, BLAKE3_JS] {
            assert!(!asset.contains("http://") && !asset.contains("https://"));
            assert!(!asset.contains("@import"));
        }
    }
}
