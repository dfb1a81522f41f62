//! Shared helpers for the integration tests (each test file includes this
//! with `mod common;`, so not every helper is used everywhere).
#![allow(dead_code)]

use bedrock_raft::{Config, EntryType, HardState, Message, MessageType, NodeId, Role};
use bedrock_raft_harness::{test_config, Network};

pub fn role(net: &Network, id: NodeId) -> Role {
    net.node(id).status().soft_state.role
}

pub fn term(net: &Network, id: NodeId) -> u64 {
    net.node(id).status().hard_state.term
}

pub fn commit(net: &Network, id: NodeId) -> u64 {
    net.node(id).status().hard_state.commit
}

pub fn leader_of(net: &Network, id: NodeId) -> NodeId {
    net.node(id).status().soft_state.leader_id
}

/// (index, term, data) of every entry in `id`'s log (read through its WAL).
pub fn log(net: &Network, id: NodeId) -> Vec<(u64, u64, Vec<u8>)> {
    let raw = net.raw(id);
    let l = raw.raft_log();
    l.slice(l.first_index(), l.last_index(), u64::MAX)
        .iter()
        .map(|e| (e.index, e.term, e.data.clone()))
        .collect()
}

/// Runs one Ready of `id` through persist and advance (applying nothing),
/// returning what a driver would send, the hard state persisted and whether
/// that needed a sync; the messages are not delivered.
pub fn take_ready(net: &Network, id: NodeId) -> (Vec<Message>, Option<HardState>, bool) {
    let c = &net.node(id).c;
    let rd = c.ready().expect("ready");
    let must_sync = rd.must_sync();
    let p = c.persist(rd).expect("persist");
    c.advance(p.marks()).expect("advance");
    (p.messages, p.hard_state, must_sync)
}

/// Normal non-empty payloads applied by `id`.
pub fn applied_data(net: &Network, id: NodeId) -> Vec<Vec<u8>> {
    net.node(id).sm.data.clone()
}

/// Config without pre-vote and check-quorum (plain Raft of the paper).
pub fn plain_config(id: NodeId) -> Config {
    let mut c = test_config(id, 0);
    c.pre_vote = false;
    c.check_quorum = false;
    c
}

pub fn is_type(t: MessageType) -> impl Fn(&bedrock_raft::Message) -> bool {
    move |m| m.msg_type == t
}

/// Ticks all nodes until some node leads, stabilizing in between.
pub fn tick_until_leader(net: &mut Network, max: usize) -> NodeId {
    for _ in 0..max {
        net.tick_all();
        net.stabilize();
        if let Some(l) = net.leader() {
            return l;
        }
    }
    panic!("no leader after {max} ticks");
}

pub fn count_conf_changes(net: &Network, id: NodeId) -> usize {
    let raw = net.raw(id);
    let l = raw.raft_log();
    l.slice(l.first_index(), l.last_index(), u64::MAX)
        .iter()
        .filter(|e| e.entry_type == EntryType::ConfChange)
        .count()
}
