//! Self-registration against a real `redis-server`: nodes appear with their address and drop
//! out when their TTL passes without a heartbeat.

use common::registry::{self, Node, NodeKind, SHARED};
use spinneret_tests::redis::RedisServer;
use std::time::Duration;

#[tokio::test]
async fn nodes_register_renew_and_expire() {
    let redis = RedisServer::start().await;
    let mut conn = common::redis_conn::RedisConn::connect(&redis.url(), &Default::default())
        .await
        .expect("connect");
    let w1 = Node {
        id: "w1-123".into(),
        addr: "10.0.0.1:9000".into(),
    };
    let w2 = Node {
        id: "w2-456".into(),
        addr: "10.0.0.2:9000".into(),
    };
    let short = Duration::from_millis(200);
    registry::heartbeat(
        &mut conn,
        SHARED,
        NodeKind::Worker,
        &w1,
        Duration::from_secs(30),
    )
    .await
    .expect("register w1");
    registry::heartbeat(&mut conn, SHARED, NodeKind::Worker, &w2, short)
        .await
        .expect("register w2");
    let mut live = registry::live(&mut conn, SHARED, NodeKind::Worker)
        .await
        .expect("live");
    live.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(live, vec![w1.clone(), w2.clone()]);
    assert!(
        registry::live(&mut conn, SHARED, NodeKind::ItemSaver)
            .await
            .expect("live")
            .is_empty(),
        "kinds are apart"
    );
    // w2 stops heartbeating (killed): it drops out after its TTL, on Redis's clock.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        registry::live(&mut conn, SHARED, NodeKind::Worker)
            .await
            .expect("live"),
        vec![w1.clone()]
    );
    registry::leave(&mut conn, SHARED, NodeKind::Worker, &w1.id)
        .await
        .expect("leave");
    assert!(
        registry::live(&mut conn, SHARED, NodeKind::Worker)
            .await
            .expect("live")
            .is_empty()
    );
}
