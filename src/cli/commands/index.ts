// Every command of the CLI, in the order `kms-appliance --help` lists them.
import type { Command } from '../command';
import { command as serve } from './serve';
import { command as activate } from './activate';
import { command as status } from './status';
import { command as clients } from './clients';
import { command as report } from './report';
import { command as dnsCheck } from './dns-check';
import { command as clientConfig } from './client-config';
import { command as config } from './config';
import { commands as admin } from './admin';
import { commands as fleet } from './fleet';

export const COMMANDS: readonly Command[] = [serve, activate, status, clients, report, dnsCheck, clientConfig, config, ...admin, ...fleet];
