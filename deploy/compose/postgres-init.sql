-- One PostgreSQL for a single host: Temporal's two databases and the records. Run once by the
-- postgres image at its first start. Temporal's schema is then set up by Temporal's own admin
-- tools (the temporal-schema service); the records' by `rop db migrate` (rop-migrate), as rop_owner.
CREATE DATABASE temporal;
CREATE DATABASE temporal_visibility;
CREATE DATABASE rop;
