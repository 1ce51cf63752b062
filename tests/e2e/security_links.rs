//! Issue 21, hole 1 (rotation): signed links name the key that signed them, so the link key
//! rotates without breaking links in flight: after a rotation the retired key still verifies
//! its links, new links use the new key, and once the retired key is removed its links stop
//! working. Links signed by no configured key id, or relabelled to another id, never pass.

use serde_json::{json, Value};

use crate::support::{melody_wav, sha256_hex, Infra, Services};
use roar_common::config::Secret;

const KEY_A: &str = "7d3f9a1c5e0b2468ace13579bdf02468ac";
const KEY_B: &str = "2b4d6f8a0c1e3579bdf1a3c5e7092468ce";

async fn put(url: &str, body: Vec<u8>) -> u16 {
    reqwest::Client::new()
        .put(url)
        .body(body)
        .send()
        .await
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

/// Registers `audio` for `alice` and returns its signed PUT link.
async fn register(svc: &Services, alice: &str, audio: &[u8]) -> String {
    let req = json!({"filename": "song.wav", "size": audio.len(), "sha256": sha256_hex(audio)});
    let (code, reg): (u16, Value) = svc.post_json(alice, "/upload", &req).await;
    assert_eq!(code, 201, "{reg}");
    reg["upload_url"].as_str().unwrap().to_string()
}

fn sig_id(url: &str) -> &str {
    let sig = url.split("sig=").nth(1).expect("sig");
    sig.split('.').next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn links_survive_a_key_rotation_until_the_old_key_is_retired() {
    let infra = Infra::start().await;
    let with_keys = |id: &str, key: &str, previous: String| {
        let mut cfg = infra.config();
        cfg.auth.link_key_id = id.into();
        cfg.auth.link_secret = Secret::new(key);
        cfg.auth.link_previous_keys = Secret::new(previous);
        cfg
    };
    let songs: Vec<Vec<u8>> = (0..3)
        .map(|i| melody_wav(&[(220.0 + 110.0 * i as f32, 0.3)], 16_000, 1))
        .collect();

    let svc = Services::start(with_keys("a", KEY_A, String::new())).await;
    let alice = svc.token("alice", &[]);
    let link1 = register(&svc, &alice, &songs[0]).await;
    let link2 = register(&svc, &alice, &songs[1]).await;
    assert_eq!(sig_id(&link1), "a");
    svc.stop().await;

    // Rotation: B signs, A only verifies.
    let svc = Services::start(with_keys("b", KEY_B, format!("a:{KEY_A}"))).await;
    let link3 = register(&svc, &alice, &songs[2]).await;
    assert_eq!(sig_id(&link3), "b");
    // Relabelling an A signature as B's does not make it B's.
    let relabelled = on(&svc, &link2).replacen("sig=a.", "sig=b.", 1);
    assert_eq!(put(&relabelled, songs[1].clone()).await, 403);
    assert_eq!(
        put(&on(&svc, &link1), songs[0].clone()).await,
        201,
        "an A link after the rotation"
    );
    svc.stop().await;

    // A retired: its links no longer verify; B's do.
    let svc = Services::start(with_keys("b", KEY_B, String::new())).await;
    assert_eq!(
        put(&on(&svc, &link2), songs[1].clone()).await,
        403,
        "A is retired"
    );
    assert_eq!(put(&on(&svc, &link3), songs[2].clone()).await, 201);
    svc.stop().await;
}

/// `link` on the server `svc` (each restart listens on a new port; path and query stay).
fn on(svc: &Services, link: &str) -> String {
    let path = &link[link.find("/upload/").expect("an upload link")..];
    format!("{}{path}", svc.base)
}

/// Hole 9 (leaks): an upload link's claims are signed, not encrypted, so they used to tell
/// anyone holding the link the owner's user id and the file's name. They now carry neither;
/// the PUT takes both from the registration.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn upload_links_name_no_user_and_no_file_name() {
    use base64::Engine;
    let infra = Infra::start().await;
    let svc = Services::start(infra.config()).await;
    let user = "user-7f3a91-carol";
    let carol = svc.token(user, &[]);
    let audio = melody_wav(&[(440.0, 0.3)], 16_000, 1);
    let name = "Carol private demo take 3.wav";
    let req = json!({"filename": name, "size": audio.len(), "sha256": sha256_hex(&audio)});
    let (code, reg) = svc.post_json(&carol, "/upload", &req).await;
    assert_eq!(code, 201, "{reg}");
    let url = reg["upload_url"].as_str().unwrap().to_string();
    let t = url
        .split("t=")
        .nth(1)
        .and_then(|r| r.split('&').next())
        .expect("t");
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(t)
        .expect("claims are base64url");
    let claims = String::from_utf8_lossy(&claims).to_string();
    for secret in [user, "carol", "Carol", "private demo"] {
        assert!(!url.contains(secret), "{secret:?} in the link {url}");
        assert!(
            !claims.contains(secret),
            "{secret:?} in the claims {claims}"
        );
    }
    assert_eq!(put(&url, audio.clone()).await, 201);
    let file = reg["file_id"].as_str().unwrap();
    let st = svc
        .wait_for(&carol, file, |v| v["file"]["status"] == "ready")
        .await;
    assert_eq!(st["file"]["filename"], name, "{st}");
    // Another user's token does not see it: the owner came from the registration.
    let (code, _) = svc
        .get_json(&svc.token("mallory", &[]), &format!("/status/{file}"))
        .await;
    assert_eq!(code, 404);
    svc.stop().await;
}
