-- Idempotency keys are now the ids themselves joined by '/' (see
-- `IdempotencyKey::of`), not a hash of them: a roster sorted by user then
-- adds its keys at the end of `requests_open_key` instead of all over it.
-- Existing rows get the same key the code now computes, so a resubmission
-- still finds the open or recently finished request it duplicates. Intake
-- never let '/' or '%' into an id; the escaping mirrors the code's anyway.
UPDATE requests SET idempotency_key =
    REPLACE(REPLACE(provider, '%', '%25'), '/', '%2F') || '/' ||
    REPLACE(REPLACE(organization_id, '%', '%25'), '/', '%2F') || '/' ||
    REPLACE(REPLACE(user_id, '%', '%25'), '/', '%2F') || '/' ||
    REPLACE(REPLACE(COALESCE(transfer_to_department_id, ''), '%', '%25'), '/', '%2F');
