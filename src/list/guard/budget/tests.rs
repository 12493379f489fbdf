use bytes::Bytes;

use super::super::held::{HeldBody, Sending};
use super::*;

fn ip(last: u8) -> Option<IpAddr> {
    Some(IpAddr::from([203, 0, 113, last]))
}

#[tokio::test(start_paused = true)]
async fn a_client_cannot_take_more_than_its_share_and_gets_it_back() {
    let budget = HeldBudget::new(100 * 1024, 40 * 1024);
    let first = budget.reserve(ip(1), 30).await.expect("within the share");
    assert_eq!(
        budget.reserve(ip(1), 20).await.err(),
        Some(HoldError::ClientShare { share: 40 * 1024 })
    );
    let other = budget.reserve(ip(2), 40).await.expect("another client");
    // A request over the share waits for the client's own pages to be released.
    let waiting = tokio::spawn({
        let budget = Arc::clone(&budget);
        async move { budget.reserve(ip(1), 40).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    drop(first);
    let again = waiting.await.expect("task").expect("given back on drop");
    assert_eq!(budget.room.available_permits(), 100 - 80);
    drop((other, again));
    assert_eq!(budget.room.available_permits(), 100);
    assert!(
        budget.clients.lock().expect("lock").is_empty(),
        "no entry left behind"
    );
}

#[tokio::test]
async fn shrinking_returns_the_unused_part_to_both() {
    let budget = HeldBudget::new(100 * 1024, 40 * 1024);
    let mut page = budget.reserve(ip(1), 40).await.expect("reserved");
    page.shrink(10);
    assert_eq!(budget.room.available_permits(), 90);
    let more = budget
        .reserve(ip(1), 30)
        .await
        .expect("the share has room again");
    drop((page, more));
    assert_eq!(budget.room.available_permits(), 100);
}

#[tokio::test(start_paused = true)]
async fn a_full_total_is_busy_after_the_hold_wait_and_the_share_is_given_back() {
    let budget = HeldBudget::new(50 * 1024, 50 * 1024);
    let _all = budget.reserve(ip(1), 50).await.expect("the whole budget");
    assert_eq!(budget.reserve(ip(2), 10).await.err(), Some(HoldError::Busy));
    assert!(
        !budget
            .clients
            .lock()
            .expect("lock")
            .contains_key(&IpAddr::from([203, 0, 113, 2]))
    );
}

#[tokio::test(start_paused = true)]
async fn a_crowd_of_waiters_cuts_one_stalled_page_at_a_time() {
    let cuts = Counter::default();
    let budget = HeldBudget::counted(100 * 1024, 100 * 1024, cuts.clone());
    let mut bodies = Vec::new();
    for _ in 0..10 {
        let room = budget.reserve(None, 10).await.expect("room");
        let bytes = super::super::held::reserved(Bytes::from(vec![b'x'; 10 * 1024]), room);
        bodies.push(HeldBody::new(
            &budget,
            vec![bytes],
            None,
            Sending::default(),
        ));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let waiters: Vec<_> = (0..5u8)
        .map(|n| {
            let budget = Arc::clone(&budget);
            tokio::spawn(async move { budget.reserve(ip(n), 10).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(cuts.get(), 1, "one cut, though five wait");
    tokio::time::sleep(CUT_RETRY * 4).await;
    assert_eq!(cuts.get(), 5, "one more per CUT_RETRY");
    for waiter in waiters {
        waiter.await.expect("task").expect("room made");
    }
    assert_eq!(cuts.get(), 5, "no page cut beyond the room needed");
    drop(bodies);
}
