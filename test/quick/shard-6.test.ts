import { runQuickShard } from './shards';

runQuickShard(6);
