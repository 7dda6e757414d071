-- Replays send only safe methods (GET, HEAD, OPTIONS) unless a service opts in to more:
-- replaying a logged DELETE or POST repeats its side effect.
ALTER TABLE services ADD COLUMN IF NOT EXISTS replay_methods text[] NOT NULL DEFAULT '{}';
