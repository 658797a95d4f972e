SELECT commit, sequence FROM {schema}.checkpoints WHERE projection = $1
