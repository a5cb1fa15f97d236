-- Recovering trainings whose process died: every replica looks for expired training claims every few seconds
-- (`vigil_store::maxidom::expired_claims`). Led by the claim time, that look is a range scan over the claims
-- that exist (almost always none), not a scan of every profile.
CREATE INDEX maxidom_profiles_claimed_at ON maxidom_profiles (training_claimed_at);
