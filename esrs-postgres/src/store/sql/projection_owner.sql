-- The current owner of the projection, locked until the caller's transaction ends, so that
-- no runner can take over before the caller's save commits (a takeover in progress is
-- waited for, and its epoch returned).
SELECT epoch FROM {schema}.projection_owners WHERE projection = $1 FOR SHARE
