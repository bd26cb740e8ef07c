// Entry point of the web client: each page names itself in <body data-page> and gets its module.

import { home } from './home.js';
import { board } from './board.js';
import { register } from './register.js';
import { player } from './player.js';

const pages = { home, board, register, player };
const start = pages[document.body.dataset.page];
if (start) start();
