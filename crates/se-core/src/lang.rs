use serde::{Deserialize, Serialize};

/// Language of a message shown to a person. Logs and docs stay in English.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    #[default]
    En,
    Fr,
}

impl Lang {
    /// Picks the language from a tag such as `fr`, `fr-FR` or an
    /// Accept-Language header; anything that is not French is English.
    pub fn from_tag(tag: &str) -> Self {
        let first = tag.split(',').next().unwrap_or("").trim().to_ascii_lowercase();
        if first == "fr" || first.starts_with("fr-") || first.starts_with("fr;") {
            Lang::Fr
        } else {
            Lang::En
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Fr => "fr",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_tag_reads_accept_language() {
        assert_eq!(Lang::from_tag("fr-FR,fr;q=0.9,en;q=0.8"), Lang::Fr);
        assert_eq!(Lang::from_tag("fr"), Lang::Fr);
        assert_eq!(Lang::from_tag("en-US,en"), Lang::En);
        assert_eq!(Lang::from_tag(""), Lang::En);
    }
}
