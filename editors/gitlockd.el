;;; gitlockd.el --- commit the current file through gitlockd  -*- lexical-binding: t; -*-
;; M-x gitlockd-commit  commits this file now; M-x gitlockd-log shows its history;
;; M-x gitlockd-restore / gitlockd-restore-at bring back an older version of it and
;; M-x gitlockd-undo reverts a commit, each as a new commit (the buffer is re-read).
(defun gitlockd--run (&rest args)
  (with-output-to-temp-buffer "*gitlockd*"
    (apply #'call-process "gitlockd" nil standard-output nil args)))

(defun gitlockd--reread ()
  "Re-read the file from disk unless the buffer has unsaved changes.
An undo of the commit that created the file removes it: the buffer is
then kept as it is, so saving it brings the file back."
  (unless (buffer-modified-p)
    (if (file-exists-p buffer-file-name)
        (revert-buffer t t t)
      (message "gitlockd: %s no longer exists; save the buffer to bring it back"
               buffer-file-name))))

(defun gitlockd-commit (message)
  "Commit the current file now through gitlockd, with MESSAGE if not empty."
  (interactive "sCommit message (empty: default): ")
  (apply #'gitlockd--run "commit" (file-name-directory buffer-file-name)
         (append (unless (string= message "") (list "-m" message))
                 (list buffer-file-name))))

(defun gitlockd-log ()
  "Show the current file's history."
  (interactive)
  (gitlockd--run "log" (file-name-directory buffer-file-name) buffer-file-name "-n" "20"))

(defun gitlockd-restore (rev)
  "Bring back the current file as it was at REV, as a new commit."
  (interactive "sRestore from revision (e.g. HEAD~1): ")
  (gitlockd--run "restore" (file-name-directory buffer-file-name) buffer-file-name "--rev" rev)
  (gitlockd--reread))

(defun gitlockd-restore-at (ago)
  "Bring back the current file as it was AGO (e.g. 2h), as a new commit."
  (interactive "sRestore as it was how long ago (e.g. 2h): ")
  (gitlockd--run "restore" (file-name-directory buffer-file-name) buffer-file-name "--at" ago)
  (gitlockd--reread))

(defun gitlockd-undo (commit)
  "Revert COMMIT (empty: the last commit) as a new commit."
  (interactive "sUndo commit (empty: the last one): ")
  (apply #'gitlockd--run "undo" (file-name-directory buffer-file-name)
         (unless (string= commit "") (list commit)))
  (gitlockd--reread))

(provide 'gitlockd)
