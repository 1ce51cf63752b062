//! `roar dev` as root from a checkout the `postgres` user cannot reach (a clone in root's home,
//! mode 0700): the cluster moves where it can live and stays linked from the dev dir, so
//! PostgreSQL starts instead of initdb failing with "Permission denied".

use std::os::unix::fs::PermissionsExt;

use roar::stack::{free_port, reachable_cluster_dir, Postgres};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_the_postgres_user_cannot_reach_moves_and_stays_linked() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("not root: PostgreSQL runs as this user, nothing to move");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (reachable, moved) = reachable_cluster_dir(&tmp.path().join("open/pg")).unwrap();
    assert!(!moved, "{}", reachable.display());

    let home = tmp.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
    let dir = home.join("checkout/.roar/pg");
    let (cluster, moved) = reachable_cluster_dir(&dir).unwrap();
    assert!(moved && dir.is_symlink(), "{}", cluster.display());
    assert_eq!(std::fs::canonicalize(&dir).unwrap(), cluster);

    let pg = Postgres::start(&cluster, free_port().unwrap()).unwrap();
    pg.ensure_database("roar").await.unwrap();
    // The next start finds the same cluster through the link.
    assert_eq!(
        reachable_cluster_dir(&dir).unwrap(),
        (cluster.clone(), true)
    );
    drop(pg);
    std::fs::remove_dir_all(&cluster).unwrap();
}
