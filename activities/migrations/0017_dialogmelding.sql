-- Dialogmelding over Norsk helsenett (issue 29): a task's delivery keeps the id Meldingstjener
-- gave its message (so a retry asks for the receipt and never sends it again) and the
-- receiver's application receipt (`Ok`, or `Rejected (E10, ...)` with its error codes).
ALTER TABLE deliveries
    ADD COLUMN transport_id text,
    ADD COLUMN receipt      text;
