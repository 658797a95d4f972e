SELECT transaction_id, sequence FROM {schema}.checkpoints WHERE projection = $1
