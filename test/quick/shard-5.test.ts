import { runQuickShard } from './shards';

runQuickShard(5);
