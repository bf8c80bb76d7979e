-- 0003: the strategy state a round accounted (a privacy event) while it was still open.
--
-- In distributed DP a round's noisy sum is unmasked, and accounted, before the round
-- closes (evaluation still runs). A server that dies in that window re-runs the round
-- under its number; the state kept here is what it re-runs from, so the first release
-- stays counted. The digest names a blob; a round_accounted audit entry records it.
ALTER TABLE rounds ADD COLUMN accounted_state TEXT
    CHECK (accounted_state IS NULL OR length(accounted_state) = 64);
