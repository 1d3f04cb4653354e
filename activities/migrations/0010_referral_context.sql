-- What the regional plan and the local pathway ask of a referral besides its parties
-- (issue 13): why a ROP pathway, the patient's birth year (the indicators' age groups,
-- "unge voksne" among them) and where the patient lives or stays (home, institution,
-- prison...). Each optional: older referrals have none.

ALTER TABLE pathways
    ADD COLUMN pathway_reason text,
    ADD COLUMN birth_year     integer,
    ADD COLUMN residence      text;

GRANT SELECT (pathway_reason, birth_year, residence) ON pathways TO rop_api;
