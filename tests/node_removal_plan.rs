//! Issue 18: the steps that remove a node from a cluster, and the refusal of a removal that
//! would leave a stream with more replicas than nodes. Pure: no server.

use natsup::node_removal::{Step, StreamReplicas, refusal, steps, too_replicated};

#[test]
fn a_removed_node_goes_lame_duck_then_meta_group_then_routes_then_container_then_credential() {
    let s = steps(&["n4".to_string()]);
    assert_eq!(
        s,
        vec![
            Step::LameDuck("n4".into()),
            Step::LeaveMetaGroup("n4".into()),
            Step::RollRoutes,
            Step::StopContainer("n4".into()),
            Step::RotateRouteCredential,
        ]
    );
    let shown: Vec<String> = s.iter().map(ToString::to_string).collect();
    assert!(shown[0].contains("lame duck"), "{shown:?}");
    assert!(
        shown[1].contains("nats server raft peer-remove n4"),
        "{shown:?}"
    );
    assert!(shown[2].contains("health gate"), "{shown:?}");
}

#[test]
fn two_removed_nodes_both_leave_before_the_one_roll() {
    let s = steps(&["n3".to_string(), "n4".to_string()]);
    let roll = s.iter().position(|x| *x == Step::RollRoutes).unwrap();
    for n in ["n3", "n4"] {
        let ldm = s
            .iter()
            .position(|x| *x == Step::LameDuck(n.into()))
            .unwrap();
        let meta = s
            .iter()
            .position(|x| *x == Step::LeaveMetaGroup(n.into()))
            .unwrap();
        let stop = s
            .iter()
            .position(|x| *x == Step::StopContainer(n.into()))
            .unwrap();
        assert!(ldm < meta && meta < roll && roll < stop, "{s:?}");
    }
    assert_eq!(s.last(), Some(&Step::RotateRouteCredential));
    assert_eq!(s.iter().filter(|x| **x == Step::RollRoutes).count(), 1);
}

#[test]
fn no_removed_node_no_steps() {
    assert!(steps(&[]).is_empty());
}

#[test]
fn a_stream_with_more_replicas_than_nodes_left_is_refused_by_name() {
    let streams = vec![
        StreamReplicas {
            account: "$G".into(),
            stream: "KV_sessions".into(),
            replicas: 3,
        },
        StreamReplicas {
            account: "$G".into(),
            stream: "EVENTS".into(),
            replicas: 1,
        },
        StreamReplicas {
            account: "$G".into(),
            stream: "WORK".into(),
            replicas: 2,
        },
    ];
    assert!(too_replicated(&streams, 3).is_empty());
    let short = too_replicated(&streams, 2);
    assert_eq!(short.len(), 1);
    assert_eq!(short[0].stream, "KV_sessions");
    let e = refusal(&["n3".to_string()], 2, &short).to_string();
    assert!(e.contains("cannot remove node n3"), "{e}");
    assert!(e.contains("2 nodes would remain"), "{e}");
    assert!(e.contains("KV_sessions R3"), "{e}");
    assert!(!e.contains("WORK"), "{e}");
    let short = too_replicated(&streams, 1);
    let e = refusal(&["n2".to_string(), "n3".to_string()], 1, &short).to_string();
    assert!(e.contains("1 node would remain"), "{e}");
    assert!(e.contains("KV_sessions R3, WORK R2"), "{e}");
}
