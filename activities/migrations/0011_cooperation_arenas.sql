-- The regional plan's indicator "Etablert arena for samhandling" (issue 13): where a health
-- trust and a municipality have established a standing arena for cooperation on ROP
-- patients, and since when. Loaded with the contact directory (`rop contacts load`).

CREATE TABLE cooperation_arenas (
    id           text PRIMARY KEY,
    health_trust text NOT NULL,
    municipality char(4) NOT NULL,
    name         text NOT NULL,
    established  date NOT NULL,
    example_data boolean NOT NULL DEFAULT false
);

GRANT SELECT ON cooperation_arenas TO rop_api;
