-- Listing runs by tag (filter[tag]): the runs with a tag, through a GIN index of the tagged
-- runs only (runs without tags cost it nothing; the listing states `tags <> '{}'` so the
-- planner may use it). A rare tag is read from here and its few runs sorted; a common one
-- is found by walking the environment's runs by age, where it is dense: the planner picks by
-- the array statistics ANALYZE keeps.

CREATE INDEX runs_by_tag ON runs USING gin (tags) WHERE tags <> '{}';
