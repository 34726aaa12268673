//! Who leads: pre-vote, phase 1 (prepare and promise), heartbeats, and
//! stepping down when preempted or cut off from a majority.

use super::*;

impl Leader {
    pub(super) fn reset_election_deadline(&mut self) {
        self.suspect_since_ms = None;
        let timeout = self.config.election_timeout_ms;
        self.election_deadline_ms = self.now_ms + timeout + self.random_below(timeout);
    }

    pub(super) fn heard_answer(&mut self, from: NodeId, ballot: Ballot) {
        if self.is_active() && ballot == self.ballot {
            self.heard_at_ballot.insert(from, self.now_ms);
        }
    }

    /// Raft's CheckQuorum: a leader that no majority has answered within an
    /// election timeout is cut off (or the others cannot hear it), so it
    /// stops leading: its clients go elsewhere, its `/health` says so, and
    /// followers that still hear its heartbeats in a one-way partition stop
    /// hearing them and may elect a leader that reaches a majority. Before
    /// it steps down it sends heartbeats and waits a heartbeat interval for
    /// their answers: a process resumed from a pause has stale answers only.
    /// True when it stepped down.
    pub(super) fn check_quorum(&mut self, fx: &mut Effects) -> bool {
        if !self.config.check_quorum {
            return false;
        }
        let ago = self.quorum_heard_ago_ms().unwrap_or(0);
        if ago <= self.config.election_timeout_ms {
            self.quorum_doubt_since_ms = None;
            return false;
        }
        match self.quorum_doubt_since_ms {
            None => {
                self.quorum_doubt_since_ms = Some(self.now_ms);
                self.send_heartbeats(fx);
                false
            }
            Some(since) if self.now_ms >= since + self.config.heartbeat_interval_ms => {
                let ago = if ago == u64::MAX {
                    "since it was elected".to_string()
                } else {
                    format!("for {ago} ms")
                };
                log::warn!(
                    "node {:x}: no majority of the group answered {ago}; stepping down (ballot {})",
                    self.me,
                    self.ballot
                );
                self.stats.step_downs += 1;
                self.follow(None);
                true
            }
            Some(_) => false,
        }
    }

    /// Asks every member whether it would take part in an election, without
    /// raising a ballot anyone sees. A member cut off from the group never
    /// gets a majority, so its return leaves the ballots as they were.
    pub(super) fn start_pre_vote(&mut self, fx: &mut Effects) {
        if !self.is_member() {
            self.state = LeaderState::Follower;
            self.reset_election_deadline();
            return;
        }
        self.state = LeaderState::PreCandidate;
        self.pre_vote_ballot = self.max_seen.max(self.ballot).next_for(self.me);
        self.pre_votes.clear();
        self.pre_votes.insert(self.me);
        self.reset_election_deadline();
        log::debug!(
            "node {:x}: pre-vote for ballot {}",
            self.me,
            self.pre_vote_ballot
        );
        for id in self.configs.members_from(self.executed) {
            if id != self.me {
                fx.send(
                    id,
                    PeerMsg::PreVote(PreVote {
                        ballot: self.pre_vote_ballot,
                    }),
                );
            }
        }
        self.maybe_won_pre_vote(fx);
    }

    /// Grants unless this node leads or heard its leader within an election
    /// timeout; either way nothing here changes (a pre-vote binds no one).
    pub(super) fn on_pre_vote(&mut self, from: NodeId, vote: PreVote, fx: &mut Effects) {
        let hears_leader = self.is_active()
            || self
                .leader_heard_ms
                .is_some_and(|at| self.now_ms < at + self.config.election_timeout_ms);
        fx.send(
            from,
            PeerMsg::PreVoteReply(PreVoteReply {
                ballot: vote.ballot,
                granted: !hears_leader,
                executed: self.executed,
            }),
        );
    }

    pub(super) fn on_pre_vote_reply(
        &mut self,
        from: NodeId,
        reply: PreVoteReply,
        fx: &mut Effects,
    ) {
        if self.state != LeaderState::PreCandidate || reply.ballot != self.pre_vote_ballot {
            return;
        }
        if reply.executed > self.executed {
            // Behind the group (it may even have been removed meanwhile):
            // the replica catches up from the one that answered.
            fx.send(
                self.me,
                PeerMsg::CommitPoint {
                    source: from,
                    executed: reply.executed,
                },
            );
        }
        if reply.granted {
            self.pre_votes.insert(from);
            self.maybe_won_pre_vote(fx);
        }
    }

    pub(super) fn maybe_won_pre_vote(&mut self, fx: &mut Effects) {
        let won = self
            .configs
            .configs_from(self.executed)
            .iter()
            .all(|members| is_majority(members, &self.pre_votes));
        if won {
            self.start_election(fx);
        }
    }

    pub(super) fn start_election(&mut self, fx: &mut Effects) {
        self.ballot = self.max_seen.max(self.ballot).next_for(self.me);
        self.max_seen = self.ballot;
        self.state = LeaderState::Candidate;
        self.promised_by.clear();
        self.to_repropose.clear();
        self.max_trimmed = 0;
        self.inflight.clear();
        self.forget_decided();
        self.forget_reads();
        self.reset_election_deadline();
        log::debug!("node {:x}: election with ballot {}", self.me, self.ballot);
        self.send_prepares(fx);
    }

    pub(super) fn send_prepares(&mut self, fx: &mut Effects) {
        self.prepare_sent_ms = self.now_ms;
        for id in self.configs.members_from(self.executed) {
            if !self.promised_by.contains(&id) {
                fx.send(
                    id,
                    PeerMsg::Prepare(Prepare {
                        ballot: self.ballot,
                        from_slot: self.executed,
                    }),
                );
            }
        }
    }

    pub(super) fn on_promise(&mut self, from: NodeId, promise: Promise, fx: &mut Effects) {
        if promise.ballot > self.ballot {
            self.preempted(promise.ballot);
            return;
        }
        let electing = matches!(self.state, LeaderState::Candidate | LeaderState::Active);
        if promise.ballot != self.ballot || !electing {
            return;
        }
        if !self.promised_by.insert(from) {
            return;
        }
        if promise.trimmed_below > self.max_trimmed {
            self.max_trimmed = promise.trimmed_below;
            self.max_trimmed_by = from;
        }
        let already_proposed_below = if self.is_active() { self.next_slot } else { 0 };
        for (slot, ballot, batch) in promise.accepted {
            if slot < already_proposed_below || slot < self.executed {
                continue;
            }
            match self.to_repropose.get(&slot) {
                Some((known, _)) if *known >= ballot => {}
                _ => {
                    self.to_repropose.insert(slot, (ballot, batch));
                }
            }
        }
        if self.state == LeaderState::Candidate {
            let prepared = self
                .configs
                .configs_from(self.executed)
                .iter()
                .all(|members| is_majority(members, &self.promised_by));
            if prepared {
                self.become_active(fx);
            }
        } else {
            self.fill_gaps();
            self.try_propose(fx);
        }
    }

    pub(super) fn become_active(&mut self, fx: &mut Effects) {
        self.state = LeaderState::Active;
        // The promises of this ballot are the first answers check-quorum counts.
        let now = self.now_ms;
        self.heard_at_ballot = self.promised_by.iter().map(|id| (*id, now)).collect();
        self.quorum_doubt_since_ms = None;
        // Like ZooKeeper: a new leader gives every session a full TTL before
        // it may expire any, so a failover never expires a live client.
        for s in self.sessions.values_mut() {
            s.last_heard_ms = now;
            s.expiring = false;
        }
        self.leader_changes += 1;
        self.leader_hint = Some(self.me);
        log::info!("node {:x}: leading with ballot {}", self.me, self.ballot);
        let start = self.executed.max(self.max_trimmed);
        self.to_repropose = self.to_repropose.split_off(&start);
        self.next_slot = start;
        self.fill_gaps();
        self.phase1_end = self.next_slot;
        self.send_heartbeats(fx);
        self.try_propose(fx);
    }

    /// Slots nobody accepted may hide between found values: fill them with
    /// no-ops so the log has no holes and later slots can execute.
    pub(super) fn fill_gaps(&mut self) {
        let Some(end) = self.to_repropose.keys().next_back().map(|s| s + 1) else {
            return;
        };
        let noop: Batch = Arc::new(vec![Command::Noop].into());
        for slot in self.next_slot..end {
            self.to_repropose
                .entry(slot)
                .or_insert((Ballot::ZERO, noop.clone()));
        }
        self.next_slot = self.next_slot.max(end);
    }

    pub(super) fn preempted(&mut self, by: Ballot) {
        if by > self.max_seen {
            self.max_seen = by;
        }
        if self.state != LeaderState::Follower {
            log::info!(
                "node {:x}: preempted by ballot {} (had {})",
                self.me,
                by,
                self.ballot
            );
        }
        self.follow(Some(by.node).filter(|n| *n != self.me));
    }

    /// Stops leading or campaigning; `hint` is who leads now, if known.
    pub(super) fn follow(&mut self, hint: Option<NodeId>) {
        self.state = LeaderState::Follower;
        self.leader_hint = hint;
        self.heard_at_ballot.clear();
        self.quorum_doubt_since_ms = None;
        self.inflight.clear();
        self.forget_decided();
        self.forget_reads();
        self.to_repropose.clear();
        // Waiting clients resend to whoever leads now; their ids keep it exactly-once.
        self.pending.clear();
        self.reset_election_deadline();
    }

    pub(super) fn on_heartbeat(&mut self, from: NodeId, hb: Heartbeat, fx: &mut Effects) {
        if hb.ballot < self.max_seen {
            return;
        }
        self.max_seen = hb.ballot;
        if self.state == LeaderState::PreCandidate {
            // It asked about a ballot nobody saw: following is all there is to undo.
            self.state = LeaderState::Follower;
        } else if hb.ballot > self.ballot && self.state != LeaderState::Follower {
            self.preempted(hb.ballot);
        }
        if self.state == LeaderState::Follower {
            self.leader_hint = Some(from);
            self.leader_heard_ms = Some(self.now_ms);
            self.reset_election_deadline();
            fx.send(
                from,
                PeerMsg::HeartbeatAck(HeartbeatAck { ballot: hb.ballot }),
            );
        }
        fx.send(
            self.me,
            PeerMsg::CommitPoint {
                source: from,
                executed: hb.executed,
            },
        );
    }

    pub(super) fn send_heartbeats(&mut self, fx: &mut Effects) {
        self.last_heartbeat_ms = self.now_ms;
        if self.max_trimmed > self.executed {
            // Slots below what an acceptor trimmed (after its restart from a
            // snapshot) are nowhere in phase 1: this leader's replica catches
            // up from that node, asking again at every heartbeat until it has.
            fx.send(
                self.me,
                PeerMsg::CommitPoint {
                    source: self.max_trimmed_by,
                    executed: self.max_trimmed,
                },
            );
        }
        // Commits first: a follower that hears of progress it has not seen asks to catch up.
        self.flush_decided(fx);
        for id in self.configs.members_from(self.executed) {
            if id != self.me {
                fx.send(
                    id,
                    PeerMsg::Heartbeat(Heartbeat {
                        ballot: self.ballot,
                        executed: self.executed,
                    }),
                );
            }
        }
    }
}
