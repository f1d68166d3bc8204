import { runQuickShard } from './shards';

runQuickShard(4);
