// Every command of the CLI, in the order `kms-appliance --help` lists them.
import type { Command } from '../command';
import { command as serve } from './serve';
import { command as activate } from './activate';
import { command as config } from './config';
import { command as clientConfig } from './client-config';

export const COMMANDS: readonly Command[] = [serve, activate, config, clientConfig];
