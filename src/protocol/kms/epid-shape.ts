// Shape of an ePID (PROTOCOL.md §7.4): PPPPP-GGGGG-KKK-KKKKKK-03-LLLL-BBBBB.0000-DDDYYYY, which also
// satisfies the client's PIDSize rules of §4.3 (at most 63 characters, no NUL).

const EPID_SHAPE = /^[0-9]{5}-[0-9]{5}-[0-9]{3}-[0-9]{6}-03-[0-9]{4,5}-[0-9]{4,5}\.0000-([0-9]{3})([0-9]{4})$/;

function isLeapYear(y: number): boolean {
  return (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
}

/** The §7.4 regular expression plus the separately checked day of year (001–365, 366 in leap years). */
export function isWellFormedEpid(epid: string): boolean {
  const m = EPID_SHAPE.exec(epid);
  if (m === null) return false;
  const day = Number(m[1]);
  const year = Number(m[2]);
  return day >= 1 && day <= (isLeapYear(year) ? 366 : 365);
}
