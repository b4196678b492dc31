// qsae's version, read from package.json once (no addon needed).
import { packageVersion } from "./package-root.js";

export const VERSION: string = packageVersion();
