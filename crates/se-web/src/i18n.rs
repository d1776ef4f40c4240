//! UI strings and API messages in English and French.
//!
//! Both languages live in `locales/{en,fr}.json`, flat maps from a dotted key
//! to a string with `{name}` placeholders. The browser fetches the whole map
//! for its language, and the server takes its error messages from the same
//! files, so one file per language contains every word a user can read.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use se_core::Lang;

/// Every language with a locale file, in the order offered to users.
pub const LANGUAGES: [Lang; 2] = [Lang::En, Lang::Fr];

const EN_SOURCE: &str = include_str!("../locales/en.json");
const FR_SOURCE: &str = include_str!("../locales/fr.json");

/// The strings of one language, by key.
pub type Catalog = BTreeMap<String, String>;

fn parse_catalog(lang: Lang, source: &str) -> Catalog {
    // A unit test parses both files, so this fallback only guards a broken build.
    serde_json::from_str(source).unwrap_or_else(|error| {
        tracing::error!(lang = lang.code(), %error, "locale file is not a flat JSON object of strings; messages fall back to their keys");
        Catalog::new()
    })
}

static EN: LazyLock<Catalog> = LazyLock::new(|| parse_catalog(Lang::En, EN_SOURCE));
static FR: LazyLock<Catalog> = LazyLock::new(|| parse_catalog(Lang::Fr, FR_SOURCE));

/// Returns the catalog of a language.
pub fn catalog(lang: Lang) -> &'static Catalog {
    match lang {
        Lang::En => &EN,
        Lang::Fr => &FR,
    }
}

/// Parses a language code from a URL (`en`, `fr`); `None` for any other code.
pub fn lang_from_code(code: &str) -> Option<Lang> {
    LANGUAGES.into_iter().find(|lang| lang.code() == code)
}

/// Looks up `key` in `lang` and fills its `{name}` placeholders from `args`.
///
/// A key missing in `lang` falls back to English, then to the key itself, so a
/// message is never empty.
pub fn translate(lang: Lang, key: &str, args: &[(&str, String)]) -> String {
    let template = catalog(lang)
        .get(key)
        .or_else(|| catalog(Lang::En).get(key))
        .map_or(key, String::as_str);
    let mut message = template.to_owned();
    for (name, value) in args {
        message = message.replace(&format!("{{{name}}}"), value);
    }
    message
}

/// Picks the language of a request: `?lang=` first, then `Accept-Language`,
/// else English.
pub fn request_lang(query: Option<&str>, headers: &HeaderMap) -> Lang {
    let from_query = query.and_then(|query| {
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(name, _)| *name == "lang")
            .map(|(_, value)| Lang::from_tag(value))
    });
    if let Some(lang) = from_query {
        return lang;
    }
    headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|value| value.to_str().ok())
        .map(Lang::from_tag)
        .unwrap_or_default()
}

/// Extractor for the language of a request: `?lang=` first, then
/// `Accept-Language`, else English.
#[derive(Debug, Clone, Copy)]
pub struct RequestLang(pub Lang);

impl<S: Send + Sync> FromRequestParts<S> for RequestLang {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(RequestLang(request_lang(parts.uri.query(), &parts.headers)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(source: &str) -> BTreeMap<String, String> {
        serde_json::from_str(source).unwrap()
    }

    #[test]
    fn locale_files_have_same_keys() {
        let english: Vec<_> = parsed(EN_SOURCE).into_keys().collect();
        let french: Vec<_> = parsed(FR_SOURCE).into_keys().collect();
        assert_eq!(english, french);
    }

    #[test]
    fn locale_values_are_never_empty() {
        for (name, source) in [("en", EN_SOURCE), ("fr", FR_SOURCE)] {
            for (key, value) in parsed(source) {
                assert!(
                    !value.trim().is_empty(),
                    "{name}.json has an empty value for {key}"
                );
            }
        }
    }

    #[test]
    fn locale_placeholders_match_between_languages() {
        let placeholders = |text: &str| {
            let mut names: Vec<String> = text
                .split('{')
                .skip(1)
                .filter_map(|part| part.split_once('}').map(|(name, _)| name.to_owned()))
                .collect();
            names.sort();
            names
        };
        let french = parsed(FR_SOURCE);
        for (key, english) in parsed(EN_SOURCE) {
            let french_value = french.get(&key).cloned().unwrap_or_default();
            assert_eq!(
                placeholders(&english),
                placeholders(&french_value),
                "placeholders of {key}"
            );
        }
    }

    #[test]
    fn every_metric_has_a_label() {
        for lang in LANGUAGES {
            for metric in se_core::Metric::ALL {
                let key = format!("metric.{}", metric.key());
                assert!(
                    catalog(lang).contains_key(&key),
                    "{} lacks {key}",
                    lang.code()
                );
            }
        }
    }

    #[test]
    fn translate_fills_placeholders() {
        let message = translate(
            Lang::Fr,
            "error.unknown_metric",
            &[("value", "\"x\"".into()), ("valid", "power_w".into())],
        );
        assert_eq!(
            message,
            "Grandeur \"x\" inconnue. Grandeurs valides : power_w."
        );
    }

    #[test]
    fn translate_unknown_key_returns_key() {
        assert_eq!(translate(Lang::En, "no.such.key", &[]), "no.such.key");
    }

    #[test]
    fn query_lang_overrides_header() {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT_LANGUAGE, "en-US,en".parse().unwrap());
        assert_eq!(request_lang(Some("points=5&lang=fr"), &headers), Lang::Fr);
    }

    #[test]
    fn header_lang_used_without_query() {
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT_LANGUAGE, "fr-CA,fr;q=0.9".parse().unwrap());
        assert_eq!(request_lang(None, &headers), Lang::Fr);
    }
}
