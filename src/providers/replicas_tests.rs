use std::time::Duration;

use super::*;

const POLICY: HealthPolicy = HealthPolicy {
    eject_after: 1,
    backoff: Duration::from_secs(3600),
    max_backoff: Duration::from_secs(3600),
};

fn set(strategy: ReplicaStrategy, n: usize) -> Replicas {
    let urls: Vec<String> = (0..n).map(|i| format!("http://vllm-{i}:8000/v1")).collect();
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    Replicas::new(&urls, strategy, 1.25, POLICY)
}

fn key(i: u64) -> u64 {
    mix(i.wrapping_add(0x1234_5678))
}

#[test]
fn affinity_is_stable_and_spreads() {
    let r = set(ReplicaStrategy::PrefixAffinity, 3);
    let mut per_replica = [0usize; 3];
    for k in 0..3000 {
        let a = r.pick(Some(key(k)), None).unwrap();
        assert_eq!(a.reason, PickReason::Affinity);
        assert_eq!(r.pick(Some(key(k)), None).unwrap().index, a.index);
        per_replica[a.index] += 1;
    }
    for n in per_replica {
        assert!((850..1150).contains(&n), "{per_replica:?}");
    }
}

#[test]
fn losing_a_replica_moves_only_its_keys() {
    let r = set(ReplicaStrategy::PrefixAffinity, 3);
    let before: Vec<usize> = (0..600)
        .map(|k| r.pick(Some(key(k)), None).unwrap().index)
        .collect();
    r.record(2, false); // eject_after = 1: replica 2 is out
    for (k, was) in before.iter().enumerate() {
        let now = r.pick(Some(key(k as u64)), None).unwrap().index;
        if *was == 2 {
            assert_ne!(now, 2);
        } else {
            assert_eq!(now, *was, "key {k} moved although its replica is fine");
        }
    }
    // The retry after a failure goes to the key's second choice, which is
    // where it lands once the first is ejected.
    let fresh = set(ReplicaStrategy::PrefixAffinity, 3);
    for (k, was) in before.iter().enumerate() {
        let second = fresh.pick(Some(key(k as u64)), Some(*was)).unwrap().index;
        let alone = set(ReplicaStrategy::PrefixAffinity, 3);
        alone.record(*was, false);
        assert_eq!(alone.pick(Some(key(k as u64)), None).unwrap().index, second);
    }
}

#[test]
fn bounded_load_spills_to_the_next_choice() {
    let r = set(ReplicaStrategy::PrefixAffinity, 3);
    let k = key(7);
    let first = r.pick(Some(k), None).unwrap().index;
    let second = r.pick(Some(k), Some(first)).unwrap().index;
    // 5 in flight on the first choice, none elsewhere: capacity is
    // ceil(1.25 × 6 / 3) = 3, so the first choice is full.
    r.list[first].in_flight.store(5, Ordering::Relaxed);
    let p = r.pick(Some(k), None).unwrap();
    assert_eq!(
        p,
        Pick {
            index: second,
            reason: PickReason::Spilled
        }
    );
    // Load spread evenly: everyone fits, affinity holds.
    for rep in &r.list {
        rep.in_flight.store(4, Ordering::Relaxed);
    }
    assert_eq!(r.pick(Some(k), None).unwrap().index, first);
}

#[test]
fn round_robin_and_least_busy() {
    let rr = set(ReplicaStrategy::RoundRobin, 3);
    let seq: Vec<usize> = (0..6)
        .map(|_| rr.pick(Some(1), None).unwrap().index)
        .collect();
    assert_eq!(seq, vec![0, 1, 2, 0, 1, 2]);
    rr.record(1, false);
    let seq: Vec<usize> = (0..4).map(|_| rr.pick(None, None).unwrap().index).collect();
    assert!(
        !seq.contains(&1) && seq.contains(&0) && seq.contains(&2),
        "{seq:?}"
    );

    let lb = set(ReplicaStrategy::LeastBusy, 3);
    lb.list[0].in_flight.store(2, Ordering::Relaxed);
    lb.list[2].in_flight.store(1, Ordering::Relaxed);
    for _ in 0..4 {
        assert_eq!(
            lb.pick(Some(9), None).unwrap(),
            Pick {
                index: 1,
                reason: PickReason::LeastBusy
            }
        );
    }
    // Prefix affinity without an opening (embeddings) is least busy too.
    let pa = set(ReplicaStrategy::PrefixAffinity, 3);
    pa.list[1].in_flight.store(1, Ordering::Relaxed);
    assert_ne!(pa.pick(None, None).unwrap().index, 1);
}

#[test]
fn exclusion_and_all_ejected() {
    let one = set(ReplicaStrategy::PrefixAffinity, 1);
    assert_eq!(one.pick(Some(1), None).unwrap().reason, PickReason::Only);
    assert!(one.pick(Some(1), Some(0)).is_none());

    let r = set(ReplicaStrategy::PrefixAffinity, 2);
    r.record(0, false);
    r.record(1, false);
    assert!(!r.any_healthy());
    let p = r.pick(Some(5), None).unwrap();
    assert_eq!(p.reason, PickReason::AllEjected);
    let other = r.pick(Some(5), Some(p.index)).unwrap();
    assert_ne!(other.index, p.index);
    assert!(r.claim_probes().is_empty(), "back-off of an hour not over");
}

#[test]
fn api_urls_are_parsed_once_and_equal_the_joined_string() {
    let r = Replicas::new(
        &["http://vllm-0:8000/v1/"],
        ReplicaStrategy::RoundRobin,
        1.25,
        POLICY,
    );
    let replica = r.get(0).unwrap();
    for path in API_PATHS {
        let parsed = replica.api_url(path).unwrap();
        assert_eq!(parsed.as_str(), format!("http://vllm-0:8000/v1{path}"));
    }
    assert!(replica.api_url("/models").is_none(), "only the API paths");
}
