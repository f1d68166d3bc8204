import { runQuickShard } from './shards';

runQuickShard(3);
