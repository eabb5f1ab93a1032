"""Qt user interface: the main window, its panels, dialogs and background lanes. The only
package that imports PySide6."""
