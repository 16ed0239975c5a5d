//! The sign-in pages' HTML, words and headers: one layout, a stylesheet served from the same
//! origin, no script of our own, every value escaped.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::mail::escape;

/// The words of the sign-in pages, configurable (an operator's product name, another language).
/// `{app}` stands for the app's id wherever it appears, `{email}` for the invited address in
/// [`link_body`](PageTexts::link_body).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PageTexts {
    /// The `lang` of every page.
    pub lang: String,
    /// A link's page: its heading.
    pub link_title: String,
    /// A link's page: who signs in.
    pub link_body: String,
    /// A link's page: the button that signs in.
    pub continue_button: String,
    /// A link used already.
    pub used: String,
    /// A link past its lifetime.
    pub expired: String,
    /// A link whose invitation was removed or renewed since.
    pub revoked: String,
    /// Not a link this service issued.
    pub invalid: String,
    /// The button that sends a new link to the stored address.
    pub send_new: String,
    /// After a new link was asked for (the same words whether or not one was sent).
    pub sent: String,
    /// After a link was asked for on the sign-in page (the same words whether or not one was sent).
    pub sign_in_sent: String,
    /// Where no link can be sent from here.
    pub ask_developer: String,
    /// The sign-in page: its heading.
    pub sign_in_title: String,
    /// The sign-in page: what it is for.
    pub sign_in_body: String,
    /// The sign-in page: the address field's label.
    pub email_label: String,
    /// The sign-in page: the button that asks for a link.
    pub email_button: String,
    /// The sign-in page: an address that does not parse.
    pub bad_email: String,
    /// A POST that did not come from this site's own page.
    pub cross_site: String,
    /// A link's POST without the cookie its page set.
    pub open_again: String,
    /// A denial's heading.
    pub refused_title: String,
    /// A denial's words.
    pub refused_body: String,
    /// Could not decide, or the store or mail server is unavailable.
    pub unavailable: String,
    /// Google's sign-in: the address is not invited.
    pub google_not_invited: String,
    /// Google's sign-in: the callback is not one Google's library sent.
    pub google_bad_request: String,
    /// After signing out.
    pub signed_out: String,
    /// Too many links asked for.
    pub rate_limited: String,
}

impl Default for PageTexts {
    fn default() -> Self {
        PageTexts {
            lang: "en".into(),
            link_title: "Sign in to {app}".into(),
            link_body: "You are signing in as {email}. The link works once.".into(),
            continue_button: "Continue to {app}".into(),
            used: "This link was already used: each link works once.".into(),
            expired: "This link has expired: links work for a short time after they are sent.".into(),
            revoked: "This invitation was withdrawn.".into(),
            invalid: "This link is not valid. Check that you opened the whole link from your email.".into(),
            send_new: "Email me a new link".into(),
            sent: "If the address is invited, a new sign-in link is on its way to it.".into(),
            sign_in_sent: "If that address is invited to {app}, a sign-in link is on its way to it.".into(),
            ask_developer: "Ask the app's developer to invite you again.".into(),
            sign_in_title: "Sign in to view {app}".into(),
            sign_in_body: "This app is private. Sign in with an address its developers invited.".into(),
            email_label: "Your email address".into(),
            email_button: "Email me a sign-in link".into(),
            bad_email: "That is not an email address this service can send to.".into(),
            cross_site: "This request did not come from this site's own page, so it was refused.".into(),
            open_again: "To continue, open the link from your email again.".into(),
            refused_title: "No access to {app}".into(),
            refused_body: "You are signed in, but you may not open this app.".into(),
            unavailable: "Your access could not be checked just now. Try again in a moment.".into(),
            google_not_invited: "The address of that Google account is not invited to {app}.".into(),
            google_bad_request: "Google's sign-in could not be verified. Try again.".into(),
            signed_out: "You are signed out.".into(),
            rate_limited: "Too many links were asked for lately. Try again later.".into(),
        }
    }
}

/// The stylesheet every page links to (`GET /auth/style.css`).
pub(super) const STYLE: &str = "\
body{font-family:system-ui,sans-serif;line-height:1.5;margin:0;background:#f6f8fa;color:#1f2328}\
main{max-width:32em;margin:4em auto;padding:2em;background:#fff;border:1px solid #d0d7de;border-radius:8px}\
h1{font-size:1.4em;margin-top:0}\
button{font:inherit;padding:.6em 1.2em;border:0;border-radius:6px;background:#1f6feb;color:#fff;cursor:pointer}\
button:focus-visible,input:focus-visible{outline:3px solid #0969da;outline-offset:2px}\
label{display:block;margin-bottom:.3em}\
input[type=email]{font:inherit;padding:.5em;width:100%;box-sizing:border-box;margin-bottom:1em}\
.note{color:#57606a;font-size:.9em}\
";

/// Google's sign-in button, where configured: its client id and where it posts.
#[derive(Debug, Clone)]
pub(super) struct GoogleButton {
    pub(super) client_id: String,
    pub(super) login_uri: String,
}

/// What a page's policy lets in besides its own origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Scripts {
    /// Nothing: no script at all.
    None,
    /// Google Identity Services' script, frame and style.
    Google,
}

/// A page: its status, its HTML and its policy.
pub(super) struct Page {
    pub(super) status: StatusCode,
    pub(super) html: String,
    pub(super) scripts: Scripts,
    pub(super) headers: HeaderMap,
}

impl Page {
    /// A page with `title` as its heading and `body` (already HTML) beneath.
    pub(super) fn new(status: StatusCode, lang: &str, style: &str, title: &str, body: &str) -> Self {
        let html = format!(
            "<!doctype html>\n<html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{title}</title><link rel=\"stylesheet\" href=\"{style}\"></head>\n\
             <body><main>\n<h1>{title}</h1>\n{body}</main></body></html>\n",
            lang = escape(lang),
            title = escape(title),
            style = escape(style),
        );
        Page { status, html, scripts: Scripts::None, headers: HeaderMap::new() }
    }

    pub(super) fn with_google(mut self) -> Self {
        self.scripts = Scripts::Google;
        self
    }

    pub(super) fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let mut response = (self.status, self.html).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
        let policy = match self.scripts {
            Scripts::None => HeaderValue::from_static(CSP),
            Scripts::Google => HeaderValue::from_static(CSP_GOOGLE),
        };
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
        for (name, value) in self.headers {
            if let Some(name) = name {
                headers.append(name, value);
            }
        }
        response
    }
}

/// No script, no frame, no connection; styles and images from this origin alone; forms post to
/// this origin (the redirects that follow are the server's, to the configured app URL).
pub(super) const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; \
                              frame-ancestors 'none'";

/// As [`CSP`], with what Google Identity Services' button needs (Google's published list).
const CSP_GOOGLE: &str = "default-src 'none'; style-src 'self' https://accounts.google.com/gsi/style; \
                          img-src 'self'; script-src https://accounts.google.com/gsi/client; \
                          frame-src https://accounts.google.com/gsi/; connect-src https://accounts.google.com/gsi/; \
                          base-uri 'none'; frame-ancestors 'none'";

/// The headers every answer under `/auth/` carries, whatever else set: tokens are in the URLs, so
/// no referrer; nothing cached; never framed; no type sniffing; and [`CSP`] where a page set none.
pub(super) fn harden(headers: &mut HeaderMap) {
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    }
}

/// `<p>` around escaped `text`.
pub(super) fn para(text: &str) -> String {
    format!("<p>{}</p>\n", escape(text))
}

/// A form that POSTs to `action` (none: the page's own URL) with one button and, optionally, the
/// address field.
pub(super) fn form(action: Option<&str>, button: &str, email_label: Option<&str>) -> String {
    let action = action.map(|a| format!(" action=\"{}\"", escape(a))).unwrap_or_default();
    let field = email_label
        .map(|label| {
            format!(
                "<label for=\"email\">{}</label>\
                 <input type=\"email\" id=\"email\" name=\"email\" autocomplete=\"email\" required maxlength=\"254\">\n",
                escape(label)
            )
        })
        .unwrap_or_default();
    format!("<form method=\"post\"{action}>\n{field}<button type=\"submit\">{}</button>\n</form>\n", escape(button))
}

/// Google's button (its library, loaded from Google; no inline script): posts to `login_uri` in
/// redirect mode, with `state` naming the app; Google signs `nonce` into the ID token.
pub(super) fn google_button(button: &GoogleButton, app: &str, nonce: &str) -> String {
    format!(
        "<script src=\"https://accounts.google.com/gsi/client\" async></script>\n\
         <div id=\"g_id_onload\" data-client_id=\"{client}\" data-login_uri=\"{login}\" data-ux_mode=\"redirect\" \
         data-auto_prompt=\"false\" data-nonce=\"{nonce}\"></div>\n\
         <div class=\"g_id_signin\" data-type=\"standard\" data-state=\"{app}\"></div>\n",
        client = escape(&button.client_id),
        login = escape(&button.login_uri),
        app = escape(app),
        nonce = escape(nonce),
    )
}
