-- The rings of a stream's state (the detector's value and evidence histories, the recent normal windows), stored
-- apart from `stream_states.state` in fixed segments, so a checkpoint rewrites only the segment that grew
-- (vigil-stream's `ring` module). `seg` is the segment's number (entry index / entries per segment), `first` the
-- index of its first entry, `data` the entries' little-endian f64s. Written in the transaction that writes the state
-- row, so a row and its segments always match; the row's core names the entries each ring holds.
CREATE TABLE stream_segments (
    stream TEXT    NOT NULL,
    ring   TEXT    NOT NULL,
    seg    INTEGER NOT NULL,
    first  INTEGER NOT NULL,
    data   BLOB    NOT NULL,
    PRIMARY KEY (stream, ring, seg)
) WITHOUT ROWID;
