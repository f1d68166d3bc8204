import { runQuickShard } from './shards';

runQuickShard(2);
