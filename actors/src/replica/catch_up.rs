//! Bringing a lagging or new replica up to date: decisions it missed,
//! and snapshots sent in chunks.

use super::*;

impl Replica {
    pub(super) fn on_commit_point(&mut self, source: NodeId, executed: Slot, fx: &mut Effects) {
        let stalled = self.executed == self.executed_at_last_commit_point;
        self.executed_at_last_commit_point = self.executed;
        if source == self.me || executed <= self.executed {
            return;
        }
        if !self.has_state || stalled {
            fx.send(
                source,
                PeerMsg::CatchUpRequest(CatchUpRequest {
                    from_slot: self.executed,
                    needs_snapshot: !self.has_state,
                }),
            );
        }
    }

    pub(super) fn on_catch_up_request(
        &mut self,
        from: NodeId,
        request: CatchUpRequest,
        fx: &mut Effects,
    ) {
        if !self.has_state || request.from_slot >= self.executed {
            return;
        }
        if request.needs_snapshot || request.from_slot < self.log_start {
            for chunk in self.snapshot_chunks() {
                fx.send(from, PeerMsg::SnapshotChunk(chunk));
            }
            return;
        }
        let decisions = self
            .log
            .range(request.from_slot..)
            .take(CATCH_UP_MAX_SLOTS)
            .map(|(slot, batch)| (*slot, batch.clone()))
            .collect();
        fx.send(from, PeerMsg::CatchUp(CatchUp { decisions }));
    }

    /// The whole replicated state as of `executed`.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            format: SNAPSHOT_FORMAT,
            executed: self.executed,
            object_name: self.objects.default_name().to_string(),
            object_state: self.objects.default_object().snapshot(),
            clients: self
                .clients
                .iter()
                .map(|(id, record)| (*id, record.clone()))
                .collect(),
            configs: self.configs.clone(),
            store: self.objects.snapshot(),
            sessions: self.sessions.iter().map(|(c, t)| (*c, *t)).collect(),
            expired: self.expired.iter().map(|(c, s)| (*c, *s)).collect(),
            group: self.group,
            removed: self.removed.iter().copied().collect(),
        }
    }

    /// The snapshot as the pieces that carry it.
    pub fn snapshot_chunks(&self) -> Vec<SnapshotChunk> {
        let snapshot = self.snapshot();
        let bytes = rmp_serde::to_vec(&snapshot).expect("snapshots serialize");
        let pieces: Vec<&[u8]> = bytes.chunks(self.chunk_bytes).collect();
        let total = pieces.len() as u32;
        pieces
            .into_iter()
            .enumerate()
            .map(|(index, piece)| SnapshotChunk {
                executed: snapshot.executed,
                index: index as u32,
                total,
                bytes: piece.to_vec(),
            })
            .collect()
    }

    /// Collects pieces in order; installs the snapshot on the last one.
    pub(super) fn on_snapshot_chunk(&mut self, chunk: SnapshotChunk, fx: &mut Effects) {
        if self.has_state && chunk.executed <= self.executed {
            return;
        }
        if chunk.index == 0 {
            self.incoming_snapshot = Some(Assembly {
                executed: chunk.executed,
                total: chunk.total,
                bytes: Vec::new(),
                next: 0,
            });
        }
        let Some(assembly) = &mut self.incoming_snapshot else {
            return; // a piece of a snapshot whose start was lost
        };
        if assembly.executed != chunk.executed
            || assembly.next != chunk.index
            || assembly.total != chunk.total
        {
            // Out of order or of another snapshot: drop it; a later catch-up asks again.
            self.incoming_snapshot = None;
            return;
        }
        assembly.bytes.extend_from_slice(&chunk.bytes);
        assembly.next += 1;
        if assembly.next < assembly.total {
            return;
        }
        let bytes = std::mem::take(&mut assembly.bytes);
        self.incoming_snapshot = None;
        match rmp_serde::from_slice::<Snapshot>(&bytes) {
            Ok(snapshot) => {
                log::info!(
                    "snapshot at slot {} arrived in {} pieces ({} bytes)",
                    chunk.executed,
                    chunk.total,
                    bytes.len()
                );
                self.on_snapshot(snapshot, fx)
            }
            Err(e) => log::error!(
                "cannot decode the snapshot at slot {} ({} bytes): {e}",
                chunk.executed,
                bytes.len()
            ),
        }
    }

    pub(super) fn on_snapshot(&mut self, snapshot: Snapshot, fx: &mut Effects) {
        if self.has_state && snapshot.executed <= self.executed {
            return;
        }
        if !(OLDEST_SNAPSHOT_FORMAT..=SNAPSHOT_FORMAT).contains(&snapshot.format) {
            log::error!(
                "refusing a snapshot of format {} at slot {}: this replica reads formats \
                 {OLDEST_SNAPSHOT_FORMAT} to {SNAPSHOT_FORMAT}",
                snapshot.format,
                snapshot.executed
            );
            return;
        }
        if self.group != 0 && snapshot.group != self.group {
            log::error!(
                "refusing a snapshot of group {:x}: this replica is in group {:x}",
                snapshot.group,
                self.group
            );
            return;
        }
        if snapshot.object_name != self.objects.default_name() {
            log::error!(
                "refusing a snapshot of {} for a replica of {}",
                snapshot.object_name,
                self.objects.default_name()
            );
            return;
        }
        let before = self.objects.default_object().snapshot();
        if let Err(e) = self.objects.default_mut().restore(&snapshot.object_state) {
            log::error!("cannot install snapshot at slot {}: {e}", snapshot.executed);
            return;
        }
        if let Err(e) = self.objects.restore(&snapshot.store) {
            log::error!("cannot install snapshot at slot {}: {e}", snapshot.executed);
            let _ = self.objects.default_mut().restore(&before);
            return;
        }
        log::info!("installed snapshot at slot {}", snapshot.executed);
        self.group = snapshot.group;
        self.removed = snapshot.removed.into_iter().collect();
        self.installed_snapshot = true;
        self.executed = snapshot.executed;
        self.executed_at_last_commit_point = snapshot.executed;
        self.clients = snapshot.clients.into_iter().collect();
        self.sessions = snapshot.sessions.into_iter().collect();
        self.expired = snapshot.expired.into_iter().collect();
        self.all_sessions_news = true;
        self.parked_total = self.clients.values().map(|r| r.parked_calls.len()).sum();
        self.configs = snapshot.configs;
        self.has_state = true;
        self.log.clear();
        self.log_start = snapshot.executed;
        self.decisions = self.decisions.split_off(&snapshot.executed);
        if let Some(trace) = &mut self.trace {
            trace.slot_digests.clear();
        }
        self.announce(fx);
        self.execute_ready(fx);
    }
}
