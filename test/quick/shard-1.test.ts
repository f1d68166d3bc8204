import { runQuickShard } from './shards';

runQuickShard(1);
