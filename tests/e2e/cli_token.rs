//! `roar token` after `roar dev`: with auth.jwt_secret unset it signs with the key `roar dev`
//! keeps in dev.dir, so the README's alternative to the printed token works against that stack;
//! with neither, it says how to get one.

use std::path::Path;
use std::process::{Command, Output};

use roar_common::auth::Authenticator;
use roar_common::config::Secret;
use roar_common::Config;

fn token(dev_dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_roar"))
        .args(["token", "--sub", "newcomer"])
        .env("ROAR_DEV__DIR", dev_dir)
        .env_remove("ROAR_AUTH__JWT_SECRET")
        .output()
        .unwrap()
}

#[test]
fn roar_token_signs_with_the_key_roar_dev_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let out = token(dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("roar dev"), "{stderr}");

    let key = "5d0c3e9a7f1b2468ac0e4f6b8d2a1c3e5f7091b3d5e7a9c1";
    std::fs::write(
        dir.path().join(roar::dev::TOKEN_KEY_FILE),
        format!("{key}\n"),
    )
    .unwrap();
    let out = token(dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let minted = String::from_utf8(out.stdout).unwrap();

    let mut cfg = Config::default();
    cfg.auth.jwt_secret = Secret::new(key);
    let claims = Authenticator::new(&cfg.auth).verify(minted.trim()).unwrap();
    assert_eq!(claims.sub, "newcomer");
    cfg.auth.jwt_secret = Secret::new("another-key-0123456789abcdef");
    assert!(Authenticator::new(&cfg.auth).verify(minted.trim()).is_err());
}
