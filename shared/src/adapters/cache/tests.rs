//! Tests for the Redis cache, against a scripted Redis on loopback.

use super::*;
use crate::redact::SecretUrl;
use test_support::resp::{Reply, RespStub};

#[tokio::test]
async fn an_unreachable_redis_fails_every_call_as_transient() {
    let config = RedisConfig {
        endpoint: RedisEndpoint::Url(SecretUrl::new("redis://127.0.0.1:1")), // nothing listens there
        key_prefix: "t:".into(),
        fence_ttl_secs: 60,
    };
    let cache = RedisProductCache::connect(&config, None).expect("connects lazily");
    let p = ProductId::parse("sku-1").expect("valid");
    let changed = [ChangedProduct {
        product_id: p.clone(),
        version: 2,
    }];

    let invalidate = cache.invalidate(&changed).await.expect_err("unreachable");
    let get = cache
        .get_many(std::slice::from_ref(&p))
        .await
        .expect_err("unreachable");
    let populate = cache
        .populate(&p, 1, "{}", Duration::from_secs(5))
        .await
        .expect_err("unreachable");

    for e in [invalidate, get, populate] {
        assert_eq!(e.kind, ErrorKind::DependencyUnavailable, "{}", e.detailed());
    }
    assert_eq!(cache.keys().prefix(), "t:");
    assert!(format!("{cache:?}").contains("fence_ttl_secs: 60"));
}

/// A cache on a scripted Redis answering `replies`, keys prefixed `t:`, fences kept 60 s.
pub(super) async fn scripted(replies: Vec<Reply>) -> (RedisProductCache, RespStub) {
    let stub = RespStub::start(replies).await;
    let config = RedisConfig {
        endpoint: RedisEndpoint::Url(SecretUrl::new(stub.url())),
        key_prefix: "t:".into(),
        fence_ttl_secs: 60,
    };
    let cache = RedisProductCache::connect(&config, None).expect("connects lazily");
    (cache, stub)
}

pub(super) fn product(id: &str) -> ProductId {
    ProductId::parse(id).expect("valid")
}

/// `words` as owned strings, to compare with what the stub received.
pub(super) fn command(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

#[tokio::test]
async fn cached_entries_come_back_in_order_and_unreadable_ones_are_misses() {
    let (cache, stub) = scripted(vec![Reply::Array(vec![
        Reply::bulk(r#"3|{"sku":"a"}"#),
        Reply::nil(),
        Reply::bulk(r#"{"legacy":true}"#),
    ])])
    .await;
    let products = [product("a"), product("b"), product("c")];

    let got = cache.get_many(&products).await.expect("read");

    assert_eq!(
        got,
        [
            Some(CacheEntry {
                version: 3,
                json: r#"{"sku":"a"}"#.into()
            }),
            None,
            None
        ]
    );
    let keys = products.iter().map(|p| cache.keys().entry(p));
    assert_eq!(
        stub.commands(),
        [std::iter::once("MGET".to_owned())
            .chain(keys)
            .collect::<Vec<_>>()]
    );
}

#[tokio::test]
async fn populate_sends_both_keys_the_version_the_json_and_at_least_a_second_of_ttl() {
    let (cache, stub) = scripted(vec![
        Reply::ints(&[1, 4]),
        Reply::ints(&[0, 9]),
        Reply::ints(&[2, 7]),
        Reply::ints(&[5, 0]),
    ])
    .await;
    let p = product("sku-1");
    let (entry, fence) = (cache.keys().entry(&p), cache.keys().fence(&p));

    let stored = cache.populate(&p, 4, "{}", Duration::from_secs(300)).await;
    let fenced = cache.populate(&p, 4, "{}", Duration::from_millis(10)).await;
    let current = cache.populate(&p, 4, "{}", Duration::from_secs(300)).await;
    let unknown = cache.populate(&p, 4, "{}", Duration::from_secs(300)).await;

    assert_eq!(stored.expect("stored"), PopulateOutcome::Stored);
    assert_eq!(
        fenced.expect("fenced"),
        PopulateOutcome::Fenced { fence: 9 }
    );
    assert_eq!(
        current.expect("current"),
        PopulateOutcome::AlreadyCurrent { cached: 7 }
    );
    assert_eq!(unknown.expect_err("unknown").kind, ErrorKind::Internal);
    let sha = POPULATE.get_hash();
    let sent = stub.commands();
    assert_eq!(
        sent[0],
        command(&["EVALSHA", sha, "2", &entry, &fence, "4", "{}", "300"])
    );
    assert_eq!(
        sent[1],
        command(&["EVALSHA", sha, "2", &entry, &fence, "4", "{}", "1"]),
        "a TTL under a second is rounded up, never 0 (which Redis refuses)"
    );
}

#[tokio::test]
async fn a_restarted_server_gets_the_script_loaded_again() {
    let (cache, stub) = scripted(vec![
        Reply::error("NOSCRIPT No matching script. Please use EVAL."),
        Reply::bulk(POPULATE.get_hash()),
        Reply::ints(&[1, 2]),
    ])
    .await;
    let p = product("sku-1");

    let done = cache.populate(&p, 2, "{}", Duration::from_secs(5)).await;

    assert_eq!(done.expect("stored"), PopulateOutcome::Stored);
    let words: Vec<String> = stub.commands().iter().map(|c| c[..2].join(" ")).collect();
    assert_eq!(
        words,
        [
            format!("EVALSHA {}", POPULATE.get_hash()),
            "SCRIPT LOAD".to_owned(),
            format!("EVALSHA {}", POPULATE.get_hash())
        ]
    );
}

#[tokio::test]
async fn invalidation_raises_every_fence_in_one_call_and_reports_the_counts() {
    let (cache, stub) = scripted(vec![Reply::ints(&[1, 2]), Reply::error("BUSY script")]).await;
    let (a, b) = (product("a"), product("b"));
    let changed = [
        ChangedProduct {
            product_id: a.clone(),
            version: 5,
        },
        ChangedProduct {
            product_id: b.clone(),
            version: 8,
        },
    ];

    let done = cache.invalidate(&changed).await.expect("invalidated");
    let busy = cache.invalidate(&changed).await.expect_err("busy");

    assert_eq!(
        done,
        CacheInvalidateOutput {
            evicted: 1,
            fenced: 2
        }
    );
    assert_eq!(busy.kind, ErrorKind::DependencyUnavailable);
    let k = cache.keys();
    assert_eq!(
        stub.commands()[0],
        command(&[
            "EVALSHA",
            INVALIDATE.get_hash(),
            "4",
            &k.entry(&a),
            &k.fence(&a),
            &k.entry(&b),
            &k.fence(&b),
            "60",
            "5",
            "8"
        ])
    );
}

#[tokio::test]
async fn a_version_lua_cannot_compare_exactly_is_refused_before_any_round_trip() {
    let (cache, stub) = scripted(Vec::new()).await;
    let p = product("a");
    let changed = [ChangedProduct {
        product_id: p.clone(),
        version: MAX_VERSION + 1,
    }];

    let invalidate = cache.invalidate(&changed).await.expect_err("refused");
    let populate = cache
        .populate(&p, -1, "{}", Duration::from_secs(5))
        .await
        .expect_err("refused");

    assert_eq!(invalidate.kind, ErrorKind::Internal);
    assert_eq!(populate.kind, ErrorKind::Internal);
    assert!(stub.commands().is_empty(), "{:?}", stub.commands());
}

#[tokio::test]
async fn settings_that_name_no_server_are_a_configuration_error() {
    let config = RedisConfig {
        endpoint: RedisEndpoint::Url(SecretUrl::new("http://cache.example")),
        key_prefix: "t:".into(),
        fence_ttl_secs: 60,
    };
    let e = RedisProductCache::connect(&config, None).expect_err("not a Redis URL");
    assert_eq!(e.kind, ErrorKind::Misconfigured);
    assert_eq!(e.message, "the Redis settings are not valid");
}

#[cfg(feature = "secrets")]
#[tokio::test]
async fn the_auth_token_is_read_from_the_configured_secret_only() {
    use test_support::stub_http::StubServer;
    let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:redis-auth";
    let secret = serde_json::json!({
        "ARN": arn,
        "Name": "redis-auth",
        "SecretString": r#"{"auth_token":"tok-123"}"#,
    });
    let stub = StubServer::always(
        200,
        &[("content-type", "application/x-amz-json-1.1")],
        &secret.to_string(),
    )
    .await;
    let client =
        aws_sdk_secretsmanager::Client::new(&test_support::aws::stub_sdk_config(stub.endpoint()));
    let with_secret = RedisConfig {
        endpoint: RedisEndpoint::Host {
            host: "cache.example".into(),
            port: 6379,
            tls: true,
            auth_secret_arn: Some(arn.into()),
        },
        key_prefix: "t:".into(),
        fence_ttl_secs: 60,
    };
    let without = RedisConfig {
        endpoint: RedisEndpoint::Url(SecretUrl::new("redis://127.0.0.1:1")),
        ..with_secret.clone()
    };

    let token = fetch_auth_token(&client, &with_secret).await.expect("read");
    let none = fetch_auth_token(&client, &without)
        .await
        .expect("no secret");

    assert_eq!(token.as_ref().map(|t| t.expose_secret()), Some("tok-123"));
    assert!(none.is_none());
    let requests = stub.received();
    assert_eq!(requests.len(), 1, "only the configured secret is read");
    assert_eq!(
        requests[0].header("x-amz-target"),
        Some("secretsmanager.GetSecretValue")
    );
    assert_eq!(requests[0].json()["SecretId"], arn);
}

#[tokio::test]
async fn nothing_to_do_needs_no_round_trip() {
    let config = RedisConfig {
        endpoint: RedisEndpoint::Url(SecretUrl::new("redis://127.0.0.1:1")),
        key_prefix: "t:".into(),
        fence_ttl_secs: 60,
    };
    let cache = RedisProductCache::connect(&config, None).expect("connects lazily");

    assert_eq!(
        cache.invalidate(&[]).await.expect("no call"),
        CacheInvalidateOutput::default()
    );
    assert!(cache.get_many(&[]).await.expect("no call").is_empty());
}

#[test]
fn entries_parse_only_in_the_versioned_form() {
    assert_eq!(
        CacheEntry::parse(r#"7|{"a":"x|y"}"#),
        Some(CacheEntry {
            version: 7,
            json: r#"{"a":"x|y"}"#.into()
        })
    );
    assert!(CacheEntry::parse("0|null").is_some_and(|e| e.is_absent()));
    assert_eq!(CacheEntry::parse(r#"{"legacy":true}"#), None);
    assert_eq!(CacheEntry::parse("seven|{}"), None);
}

#[test]
fn versions_beyond_exact_lua_numbers_are_refused() {
    assert!(check_version(0).is_ok() && check_version(MAX_VERSION).is_ok());
    assert_eq!(
        check_version(-1).expect_err("negative").kind,
        ErrorKind::Internal
    );
    assert_eq!(
        check_version(MAX_VERSION + 1).expect_err("too big").kind,
        ErrorKind::Internal
    );
}

#[test]
fn elasticache_settings_give_a_tls_address_with_the_token() {
    let endpoint = RedisEndpoint::Host {
        host: "cache.example".into(),
        port: 6380,
        tls: true,
        auth_secret_arn: None,
    };
    let info = connection_info(&endpoint, Some(&SecretString::from("tok"))).expect("valid");
    assert!(
        matches!(info.addr(), ConnectionAddr::TcpTls { host, port: 6380, insecure: false, .. } if host == "cache.example")
    );
    assert_eq!(info.redis_settings().password(), Some("tok"));

    let plain = RedisEndpoint::Host {
        host: "h".into(),
        port: 6379,
        tls: false,
        auth_secret_arn: None,
    };
    let info = connection_info(&plain, None).expect("valid");
    assert!(matches!(info.addr(), ConnectionAddr::Tcp(_, 6379)));
    assert_eq!(info.redis_settings().password(), None);
}

#[test]
fn a_url_keeps_its_scheme_and_database() {
    let info = connection_info(
        &RedisEndpoint::Url(SecretUrl::new("rediss://cache.example:6379/2")),
        None,
    )
    .expect("valid");
    assert!(matches!(info.addr(), ConnectionAddr::TcpTls { .. }));
    assert_eq!(info.redis_settings().db(), 2);
    assert!(connection_info(&RedisEndpoint::Url(SecretUrl::new("redis://")), None).is_err());
}
