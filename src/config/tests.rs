use super::*;
use crate::connectors::ProviderKind;

const EXAMPLE: &str = r#"
[database]
url = "sqlite://offboard.db"
[worker]
concurrency = 16
[providers.acme]
kind = "aitronos"
base_url = "https://api.aitronos.com/v1"
token_env = "ACME_AITRONOS_TOKEN"
protected_users = ["usr_breakglass"]
"#;

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn example_config_parses() {
    let c = Config::from_toml_str(EXAMPLE, "t", &[]).unwrap();
    assert_eq!(c.worker.concurrency, 16);
    assert_eq!(c.providers["acme"].kind(), ProviderKind::Aitronos);
    assert_eq!(
        c.providers["acme"].connection.protected_users,
        ["usr_breakglass"]
    );
}

#[test]
fn shipped_example_file_parses() {
    let text = include_str!("../../config/offboard.example.toml");
    Config::from_toml_str(text, "example", &[]).unwrap();
}

#[test]
fn env_overrides_win_and_are_typed() {
    let c = Config::from_toml_str(
        EXAMPLE,
        "t",
        &vars(&[
            ("OFFBOARD__WORKER__CONCURRENCY", "4"),
            (
                "OFFBOARD__PROVIDERS__ACME__BASE_URL",
                "http://127.0.0.1:9/aitronos/v1",
            ),
            ("UNRELATED", "x"),
        ]),
    )
    .unwrap();
    assert_eq!(c.worker.concurrency, 4);
    assert_eq!(
        c.providers["acme"].connection.base_url,
        "http://127.0.0.1:9/aitronos/v1"
    );
}

#[test]
fn errors_name_the_key() {
    let err = Config::from_toml_str(
        EXAMPLE,
        "t",
        &vars(&[("OFFBOARD__WORKER__CONCURRENCY", "0")]),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("worker.concurrency"), "{err}");

    let bad_url = EXAMPLE.replace("https://api.aitronos.com/v1", "ftp://x");
    let err = Config::from_toml_str(&bad_url, "t", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("providers.acme.base_url"), "{err}");

    let typo = EXAMPLE.replace("concurrency", "concurency");
    let err = Config::from_toml_str(&typo, "t", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("concurency"), "{err}");
}

#[test]
fn a_misspelt_variable_is_named_as_written() {
    let err = Config::from_toml_str(
        EXAMPLE,
        "t",
        &vars(&[
            ("OFFBOARD__WORKER__CONCURRENCY", "4"),
            ("OFFBOARD__WORKER__CONCURENCY", "4"),
        ]),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("OFFBOARD__WORKER__CONCURENCY"), "{err}");
}

#[test]
fn missing_token_names_variable_not_value() {
    let c = Config::from_toml_str(EXAMPLE, "t", &[]).unwrap();
    let err = resolve_providers(&c, |_| None).unwrap_err().to_string();
    assert!(err.contains("ACME_AITRONOS_TOKEN"), "{err}");
    assert!(err.contains("providers.acme.token_env"), "{err}");
    let ok = resolve_providers(&c, |_| Some("s3cret".into())).unwrap();
    assert!(!format!("{ok:?}").contains("s3cret"));
}

#[test]
fn database_passwords_never_show() {
    use super::model::redact_url;
    assert_eq!(
        redact_url("postgres://app:s3cret@db.internal:5432/offboard"),
        "postgres://app:***@db.internal:5432/offboard"
    );
    assert_eq!(
        redact_url("postgres://app@db:5432/offboard?sslmode=require"),
        "postgres://app@db:5432/offboard?sslmode=require"
    );
    assert_eq!(redact_url("sqlite://offboard.db"), "sqlite://offboard.db");
    assert_eq!(
        redact_url("postgres://db:5432/offboard?user=app&password=s3cret&sslmode=require"),
        "postgres://db:5432/offboard?user=app&password=***&sslmode=require"
    );
    assert_eq!(
        redact_url("postgres://app:a@db/x?PASSWORD=b"),
        "postgres://app:***@db/x?PASSWORD=***"
    );
}

#[test]
fn clear_text_urls_are_refused_unless_loopback_or_allowed() {
    let remote = EXAMPLE.replace("https://api.aitronos.com/v1", "http://api.aitronos.com/v1");
    let err = Config::from_toml_str(&remote, "t", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("providers.acme.base_url"), "{err}");
    assert!(err.contains("allow_insecure_http"), "{err}");
    let allowed = remote.replace(
        "protected_users",
        "allow_insecure_http = true\nprotected_users",
    );
    Config::from_toml_str(&allowed, "t", &[]).unwrap();
    let local = EXAMPLE.replace("https://api.aitronos.com/v1", "http://127.0.0.1:8081/v1");
    Config::from_toml_str(&local, "t", &[]).unwrap();
    let token_url = r#"
[providers.a0]
kind = "auth0"
base_url = "https://t.eu.auth0.com/api/v2"
auth = "client_credentials"
client_id_env = "ID"
client_secret_env = "SECRET"
token_url = "http://t.eu.auth0.com/oauth/token"
audience = "https://t.eu.auth0.com/api/v2/"
"#;
    let err = Config::from_toml_str(token_url, "t", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("providers.a0.token_url"), "{err}");
}

#[test]
fn an_option_of_another_kind_names_its_key_and_kind() {
    let misplaced = EXAMPLE.replace("protected_users", "block_user = true\nprotected_users");
    let err = Config::from_toml_str(&misplaced, "t", &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("providers.acme.block_user")
            && err.contains("only applies to kind = \"auth0\""),
        "{err}"
    );
    let err = Config::from_toml_str(
        EXAMPLE,
        "t",
        &vars(&[("OFFBOARD__PROVIDERS__ACME__DEPROVISION", "delete")]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("providers.acme.deprovision")
            && err.contains("only applies to kind = \"scim\""),
        "{err}"
    );
    let cc = EXAMPLE.replace(
        "protected_users",
        "auth = \"client_credentials\"\nprotected_users",
    );
    let err = Config::from_toml_str(&cc, "t", &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("providers.acme.auth") && err.contains("only applies to kind = \"auth0\""),
        "{err}"
    );
    let typo = EXAMPLE.replace("protected_users", "timout_ms = 5\nprotected_users");
    let err = Config::from_toml_str(&typo, "t", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("timout_ms"), "{err}");
}

#[test]
fn an_email_protects_only_where_the_connector_finds_by_email() {
    let email = EXAMPLE.replace("usr_breakglass", "boss@acme.example");
    let err = Config::from_toml_str(&email, "t", &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("providers.acme.protected_users"), "{err}");
    let scim = email.replace("kind = \"aitronos\"", "kind = \"scim\"");
    Config::from_toml_str(&scim, "t", &[]).unwrap();
}
